"""Messages a fetch could not handle the normal way, remembered per account.

One row per UIDL in ``popaccounts_fetch_fault`` (:class:`~..storage.models.FetchFault`),
``kind``:

- ``failing``: RETR was refused, or the connection died while the message was in
  flight; ``attempts`` counts the sessions it failed in that way. At :data:`SET_ASIDE_AFTER`
  it becomes ``set_aside``: not asked for again (the rest of the mailbox goes on) until
  the user presses Retry (:func:`retry`), which forgets the row.
- ``too_large``: over the account's size limit, left on the server; remembered with its
  size (and sender/subject when TOP gave them), so an idle poll needs no LIST when
  nothing else is new. "Fetch anyway" (:func:`fetch_anyway`) lifts the limit for that
  UIDL once: the row goes when the message is stored.
- ``dele_refused`` / ``dele_ignored``: a stored message the server would not delete
  (DELE answered -ERR), or said it deleted and still lists. Its DELE is sent again
  at most once per :data:`DELE_RETRY` instead of every session.

Rows of messages the server no longer lists, or that are now stored, are dropped. The
account's ``fetch_warning`` sums up the last fetch for the card (space-separated
tokens: ``dele_refused``, ``dele_ignored``, ``uidl_dup=N``, ``uidl_bad=N``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..engine.errors import clean_detail
from ..engine.parse import display_text
from ..engine.types import FetchReport, RetrievalPolicy
from ..i18n import gettext as _
from ..i18n import isolate, ngettext
from ..storage.faults import FetchFault
from ..storage.models import Account, UidlEntry
from . import scheduling

#: Sessions a message may fail in (refused, or cut while in flight) before it is set aside.
SET_ASIDE_AFTER = 3
#: A DELE the server refused or ignored is sent again after this long, not every session.
DELE_RETRY = timedelta(hours=24)

_UNFETCHED = ("failing", "set_aside", "too_large")
_DELE = ("dele_refused", "dele_ignored")


@dataclass
class Known:
    """The account's rows as the fetch started (kind, last_seen), kept up to date."""

    rows: dict[str, tuple[str, datetime, bool, int]] = field(default_factory=dict)
    held: frozenset[str] = frozenset()  #: DELEs the last :meth:`policy` held back

    def policy(self, base: RetrievalPolicy, now: datetime) -> RetrievalPolicy:
        """``base`` with the UIDLs to skip, to fetch anyway and whose DELE waits."""
        skip, anyway, hold = set(), set(), set()
        for uidl, (kind, last_seen, lift, size) in self.rows.items():
            # (a limit raised since above a message's size lets it come by itself)
            if kind == "set_aside" or (kind == "too_large" and not lift
                                       and size > base.max_message_size):
                skip.add(uidl)
            elif lift:
                anyway.add(uidl)
            if kind in _DELE and last_seen + DELE_RETRY > now:
                hold.add(uidl)
        self.held = frozenset(hold)
        return dataclasses.replace(base, skip_uidls=frozenset(skip),
                                   fetch_anyway=frozenset(anyway), hold_dele=self.held,
                                   remembered=frozenset(self.rows))


def load(session: Session, account_id: int) -> Known:
    """The account's fault rows (one query)."""
    rows = session.execute(select(FetchFault.uidl, FetchFault.kind, FetchFault.last_seen,
                                  FetchFault.fetch_anyway, FetchFault.size)
                           .where(FetchFault.account_id == account_id))
    return Known({u: (k, seen, bool(lift), int(size)) for u, k, seen, lift, size in rows})


def _needs_write(known: Known, report: FetchReport) -> bool:
    return bool(report.refused or report.in_flight or report.too_large or report.dele_refused
                or report.not_listed
                or (report.stored and any(r[0] in _UNFETCHED for r in known.rows.values()))
                or set(report.reappeared) - known.held)


def record(session_factory: Callable[[], Session], account_id: int, report: FetchReport,
           known: Known, *, now: datetime) -> None:
    """What one session (finished or failed) says about problem messages; commits.

    Idle polls with nothing to say write nothing.
    """
    if not _needs_write(known, report):
        return
    with session_factory() as session:
        rows = {r.uidl: r for r in session.scalars(
            select(FetchFault).where(FetchFault.account_id == account_id))}
        for uidl in report.not_listed:
            if uidl in rows:
                session.delete(rows.pop(uidl))
        if report.stored and rows:
            stored = set(session.scalars(select(UidlEntry.uidl).where(
                UidlEntry.account_id == account_id,
                UidlEntry.uidl.in_([u for u, r in rows.items() if r.kind in _UNFETCHED]))))
            for uidl in stored:
                session.delete(rows.pop(uidl))
        for uidl, text in report.refused.items():
            _strike(session, rows, account_id, uidl, "refused: " + clean_detail(text, 180), 0,
                    now)
        if report.in_flight:
            _strike(session, rows, account_id, report.in_flight, "connection",
                    report.in_flight_size, now)
        for uidl, info in report.too_large.items():
            row = rows.get(uidl) or _new(session, rows, account_id, uidl, "too_large", now)
            row.size, row.from_addr, row.subject = info.size, info.from_addr, info.subject
        for kind, uidls in (("dele_refused", report.dele_refused),
                            ("dele_ignored", report.reappeared)):
            for uidl in set(uidls) - known.held:  # (a held one had no DELE sent)
                _dele_sent(session, rows, account_id, uidl, kind, now)
        session.commit()
        known.rows = {u: (r.kind, r.last_seen, r.fetch_anyway, r.size) for u, r in rows.items()}


def _new(session: Session, rows: dict[str, FetchFault], account_id: int, uidl: str,
         kind: str, now: datetime) -> FetchFault:
    row = FetchFault(account_id=account_id, uidl=uidl, kind=kind, reason="", attempts=0,
                     first_seen=now, last_seen=now, size=0, from_addr="", subject="",
                     fetch_anyway=False)
    session.add(row)
    rows[uidl] = row
    return row


def _strike(session: Session, rows: dict[str, FetchFault], account_id: int, uidl: str,
            reason: str, size: int, now: datetime) -> None:
    """One more failed attempt at ``uidl``; set aside at :data:`SET_ASIDE_AFTER`."""
    row = rows.get(uidl)
    if row is None or row.kind not in _UNFETCHED:
        row = row or _new(session, rows, account_id, uidl, "failing", now)
        row.kind, row.attempts = "failing", 0
    elif row.kind == "too_large":  # fetched anyway, and that failed
        row.kind, row.attempts = "failing", 0
    if row.reason.split(":", 1)[0] != reason.split(":", 1)[0]:
        row.attempts = 0  # counted per way of failing: refused, or cut in flight
    row.attempts = int(row.attempts or 0) + 1
    row.reason, row.last_seen = reason[:200], now
    row.size = size or row.size
    if row.attempts >= SET_ASIDE_AFTER:
        row.kind = "set_aside"


def _dele_sent(session: Session, rows: dict[str, FetchFault], account_id: int, uidl: str,
               kind: str, now: datetime) -> None:
    """A DELE of ``uidl`` was refused, or (reappeared) did not take."""
    row = rows.get(uidl) or _new(session, rows, account_id, uidl, kind, now)
    row.kind, row.last_seen = kind, now
    row.attempts = int(row.attempts or 0) + 1


def warning_for(known: Known, report: FetchReport) -> str | None:
    """The account's ``fetch_warning`` after a fetch (None: nothing to say)."""
    kinds = {row[0] for row in known.rows.values()}
    words = [k for k in _DELE if k in kinds]
    if report.uidl_duplicates:
        words.append(f"uidl_dup={report.uidl_duplicates}")
    if report.uidl_nonconforming:
        words.append(f"uidl_bad={report.uidl_nonconforming}")
    return " ".join(words)[:80] or None


# -- the user's side ------------------------------------------------------------------


def problems(session: Session, account_id: int) -> list[FetchFault]:
    """The account's rows, oldest first (for the card)."""
    return list(session.scalars(select(FetchFault).where(FetchFault.account_id == account_id)
                                .order_by(FetchFault.first_seen, FetchFault.uidl)))


def _owned_row(session: Session, account: Account, uidl: str) -> FetchFault | None:
    return session.get(FetchFault, (account.id, uidl))


def retry(session: Session, account: Account, uidl: str, *, now: datetime) -> bool:
    """Retry a message set aside (or failing): asked for again at the next check; commits.

    False when there is no such message (already fetched, or gone from the server).
    """
    row = _owned_row(session, account, uidl)
    if row is None or row.kind not in ("failing", "set_aside"):
        return False
    if row.fetch_anyway:
        row.kind, row.attempts = "too_large", 0
    else:
        session.execute(delete(FetchFault).where(FetchFault.account_id == account.id,
                                                 FetchFault.uidl == uidl))
    scheduling.make_due_now(session, account.id, now=now)  # commits
    return True


def fetch_anyway(session: Session, account: Account, uidl: str, *, now: datetime) -> bool:
    """Fetch one message over the size limit at the next check (once); commits."""
    row = _owned_row(session, account, uidl)
    if row is None or row.kind != "too_large":
        return False
    row.fetch_anyway = True
    scheduling.make_due_now(session, account.id, now=now)  # commits
    return True


# -- the card -------------------------------------------------------------------------


@dataclass(frozen=True)
class CardLine:
    """One sentence of the account card about problem messages, with its button."""

    text: str
    action: str = ""  #: "retry" | "fetch_anyway" | "" (no button)
    uidl: str = ""
    size: int = 0  #: octets, shown with the site's size format (0: not shown)


def _set_aside_text(row: FetchFault) -> str:
    if row.reason.startswith("refused"):
        return ngettext("1 message could not be downloaded: the server refused to send it "
                        "(%(num)s attempt).",
                        "1 message could not be downloaded: the server refused to send it "
                        "(%(num)s attempts).", int(row.attempts or 0))
    return ngettext("1 message could not be downloaded: the connection broke while it was "
                    "being downloaded (%(num)s attempt).",
                    "1 message could not be downloaded: the connection broke while it was "
                    "being downloaded (%(num)s attempts).", int(row.attempts or 0))


def _large_text(row: FetchFault) -> str:
    """A message left on the server for its size, by what TOP told of it."""
    subject, sender = display_text(row.subject or ""), display_text(row.from_addr or "")
    if subject and sender:
        what = _("“%(subject)s” from %(sender)s", subject=isolate(subject),
                 sender=isolate(sender))
    elif subject:
        what = _("“%(subject)s”", subject=isolate(subject))
    elif sender:
        what = _("A message from %(sender)s", sender=isolate(sender))
    elif row.fetch_anyway:
        return _("A message: will be downloaded at the next check.")
    else:
        return _("A message (the server does not say from whom)")
    if row.fetch_anyway:
        return _("%(what)s: will be downloaded at the next check.", what=what)
    return what


def card_lines(session: Session, account: Account) -> list[CardLine]:
    """What the card says about the account's problem messages, in plain words (in the
    reader's language: built during the request; subjects and senders isolated)."""
    out: list[CardLine] = []
    rows = problems(session, account.id)
    for row in rows:
        if row.kind == "set_aside":
            out.append(CardLine(_set_aside_text(row), "retry", row.uidl))
    large = [r for r in rows if r.kind == "too_large"]
    if large:
        out.append(CardLine(ngettext(
            "%(num)s message over this account's size limit stays on the server:",
            "%(num)s messages over this account's size limit stay on the server:", len(large))))
    for row in large:
        if row.fetch_anyway:
            out.append(CardLine(_large_text(row), size=row.size))
        else:
            out.append(CardLine(_large_text(row), "fetch_anyway", row.uidl, row.size))
    refused = sum(1 for r in rows if r.kind == "dele_refused")
    if refused:
        out.append(CardLine(ngettext(
            "%(num)s message stored here is still on the server: the server refused to "
            "delete it.",
            "%(num)s messages stored here are still on the server: the server refused to "
            "delete them.", refused)))
    ignored = sum(1 for r in rows if r.kind == "dele_ignored")
    if ignored:
        out.append(CardLine(ngettext(
            "%(num)s message stored here is still on the server: the server said it deleted "
            "it, but still lists it.",
            "%(num)s messages stored here are still on the server: the server said it "
            "deleted them, but still lists them.", ignored)))
    out.extend(CardLine(text) for text in _uidl_lines(account.fetch_warning or ""))
    return out


def _uidl_lines(warning: str) -> list[str]:
    counts = dict(w.split("=", 1) for w in warning.split() if "=" in w)
    lines = []
    if counts.get("uidl_dup"):
        n = int(counts["uidl_dup"]) + 1
        lines.append(_("This server gives 2 messages the same id; both were downloaded.")
                     if n == 2 else ngettext(
                         "This server gives %(num)s message the same id; all were downloaded.",
                         "This server gives %(num)s messages the same id; all were "
                         "downloaded.", n))
    if counts.get("uidl_bad"):
        lines.append(ngettext(
            "This server gives %(num)s message an id POP3 does not allow; it was downloaded "
            "under a stable substitute id.",
            "This server gives %(num)s messages an id POP3 does not allow; each was "
            "downloaded under a stable substitute id.", int(counts["uidl_bad"])))
    return lines
