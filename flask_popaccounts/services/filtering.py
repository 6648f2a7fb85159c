"""Filters and the vacation reply, applied at fetch time inside the durable step (R1).

How a fetched message meets the account's rules:

1. The fetch builds each :class:`~..storage.mailstore.SqlSink` with the classifier of
   :func:`classifier_for`: it loads the account's enabled rules (in order), its
   vacation settings and the addresses forwarding may go to, once per fetch session;
   an account with neither gets no classifier at all.
2. In ``SqlSink.add`` the classifier decides the message's folder (created on demand),
   read and flagged state *before* its row is inserted, and returns the mail to send
   (forward, vacation reply) as outbox rows that the sink inserts in the same
   transaction. The vacation memory (:class:`~..storage.models.VacationReplied`) is
   written there too. So a crash leaves either the message with all its filter effects
   and its outbox rows, or none of it (and the message is fetched again, and filtered
   once).
3. After the fetch, :mod:`.outbox` sends what the rows say.

Forwarding goes only to addresses the owner has verified (:func:`verified_addresses`).
Forwards and vacation replies fire only for mail that arrived after the rule or the
reply was switched on (``enabled_at``, the app's clock; arrival time as defined in
:func:`..engine.autoreply.arrival_time`), so a first sync or a re-import of old mail
sends nothing; a message carrying our forward marker is never forwarded again.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from ..engine import autoreply
from ..engine.clock import Clock, utcnow
from ..engine.filters import (
    Decision,
    Rule,
    RuleInvalid,
    describe_text,
    evaluate,
    load_rule,
    needs_regex,
    validate,
)
from ..engine.mailview import BODY_READ_LIMIT, MailView
from ..engine.parse import HEADER_LIMIT, header_section, read_header_section
from ..engine.patterns import RegexRunner
from ..engine.types import RetrievedMessage
from ..i18n import gettext as _
from ..storage.mailbox import folder_id_for, iter_raw
from ..storage.mailstore import Placement
from ..storage.models import (
    Account,
    Filter,
    Folder,
    FolderRole,
    Message,
    SendAsAddress,
    Vacation,
    VacationReplied,
)
from .texts import translate, translate_all
from .vacation import get_vacation, vacation_active

if TYPE_CHECKING:
    pass

log = logging.getLogger("flask_popaccounts.services.filtering")

MAX_ATTEMPTS = 5
RETRY_BASE_SECONDS = 60.0
MAX_RULES = 100


# -- rules: the editor's side ------------------------------------------------------------------


def verified_addresses(session: Session, owner_id: str) -> set[str]:
    """Every address the owner has verified (lower-case): where forwards may go."""
    rows = session.scalars(select(SendAsAddress.address).where(
        SendAsAddress.owner_id == str(owner_id), SendAsAddress.verified_at.is_not(None)))
    return {a.strip().lower() for a in rows}


def list_rules(session: Session, account_id: int) -> list[Filter]:
    return list(session.scalars(select(Filter).where(Filter.account_id == account_id)
                                .order_by(Filter.position, Filter.id)))


def get_rule(session: Session, account_id: int, rule_id: int) -> Filter | None:
    return session.scalar(select(Filter).where(Filter.id == int(rule_id),
                                               Filter.account_id == account_id))


def rule_of(row: Filter) -> Rule:
    return load_rule(row.id, row.name, bool(row.match_all), row.conditions_json,
                     row.actions_json)


def describe(row: Filter) -> str:
    """The rule's one-line summary for the list page, in the reader's language (its
    labels translated, its values isolated)."""
    return translate(describe_text(rule_of(row)))


def save_rule(session: Session, account: Account, *, name: str, match_all: bool, enabled: bool,
              conditions: list[dict[str, Any]], actions: list[dict[str, Any]],
              rule: Filter | None = None, now: datetime | None = None) -> Filter:
    """Validate and store a rule (new ones go last); commits. Raises RuleInvalid (its
    problems in the reader's language).

    Switching a rule on (a new enabled rule, or a disabled one enabled) records ``now``
    (the app's clock): it forwards only mail that arrives from then on.
    """
    allowed = verified_addresses(session, account.owner_id)
    try:
        conds, acts = validate(conditions, actions, name=name,
                               forward_allowed=lambda a: a.lower() in allowed)
    except RuleInvalid as exc:  # the problems in the reader's language
        raise RuleInvalid(translate_all(exc.problems)) from None
    if rule is None:
        count = session.scalar(select(func.count()).select_from(Filter)
                               .where(Filter.account_id == account.id)) or 0
        if count >= MAX_RULES:  # (100: the number is written in the words)
            raise RuleInvalid([_("An account can have at most 100 rules.")])
        last = session.scalar(select(func.max(Filter.position))
                              .where(Filter.account_id == account.id))
        rule = Filter(account_id=account.id, position=int(last or 0) + 1)
        session.add(rule)
    if enabled and (not rule.enabled or rule.enabled_at is None):
        rule.enabled_at = now or utcnow()
    rule.name = name.strip()
    rule.match_all = bool(match_all)
    rule.enabled = bool(enabled)
    rule.conditions_json = json.dumps(conds)
    rule.actions_json = json.dumps(acts)
    session.commit()
    return rule


def delete_rule(session: Session, rule: Filter) -> None:
    session.delete(rule)
    session.commit()


def move_rule(session: Session, account_id: int, rule_id: int, delta: int) -> None:
    """Move a rule up (-1) or down (+1) in the order; commits (renumbers 1..n)."""
    rules = list_rules(session, account_id)
    index = next((i for i, r in enumerate(rules) if r.id == int(rule_id)), None)
    if index is None:
        return
    target = index + delta
    if 0 <= target < len(rules):
        rules[index], rules[target] = rules[target], rules[index]
    for pos, r in enumerate(rules, 1):
        r.position = pos
    session.commit()


# -- the classifier (inside the sink's transaction) ---------------------------------------------


class FilterClassifier:
    """The account's filters and vacation reply, for one fetch session (one sink)."""

    def __init__(self, account_id: int, rules: list[Rule], vacation: Vacation | None,
                 own: set[str], allowed: set[str], trash_id: int, *,
                 clock: Clock = utcnow,
                 enabled_at: dict[int, datetime | None] | None = None) -> None:
        self.account_id = account_id
        #: rule id -> when it was switched on (forwards only for mail arrived since)
        self.enabled_at = enabled_at or {}
        self.clock = clock
        self.rules = rules
        self.vacation = vacation
        self.own = own
        self.allowed = allowed
        self.trash_id = trash_id
        self.regex = RegexRunner() if needs_regex(rules) else None
        self._folders: dict[str, int] = {}
        self.decisions: list[Decision] = []  #: (for tests and logs)

    def _folder(self, session: Session, name: str) -> int:
        key = name.casefold()
        if key in self._folders:
            return self._folders[key]
        rows = session.execute(select(Folder.id, Folder.name)
                               .where(Folder.account_id == self.account_id)).all()
        found = next((fid for fid, n in rows if n == name), None)
        if found is None:
            found = next((fid for fid, n in rows if n.casefold() == key), None)
        if found is None:  # created on demand, in the message's transaction
            result = session.connection().execute(insert(Folder), {
                "account_id": self.account_id, "name": name, "role": FolderRole.CUSTOM.value})
            pk = result.inserted_primary_key
            assert pk is not None
            found = int(pk[0])
        self._folders[key] = int(found)
        return int(found)

    def decide(self, message: RetrievedMessage) -> tuple[MailView, Decision]:
        """The rules' decision on one spooled message (its spool left at the start),
        with the view the rules saw; no side effects (the built-in store and the
        external deliveries both ask this)."""
        spool = message.spool
        header = read_header_section(spool)

        def body_source() -> bytes:
            spool.seek(header.body_offset)
            data = spool.read(BODY_READ_LIMIT)
            spool.seek(0)
            return data

        view = MailView(header, message.size, body_source)
        try:
            return view, evaluate(self.rules, view, self.regex)
        finally:
            spool.seek(0)

    def classify(self, session: Session, message: RetrievedMessage) -> Placement | None:
        view, decision = self.decide(message)
        self.decisions.append(decision)
        for err in decision.errors:
            log.warning("account %s, message %s: %s", self.account_id, message.uidl, err)
        placement = Placement(is_read=decision.read, is_flagged=decision.flagged)
        if decision.trash:
            placement.folder_id = self.trash_id
        elif decision.folder:
            placement.folder_id = self._folder(session, decision.folder)
        now = self.clock()
        arrival = autoreply.arrival_time(view.headers, now)
        for addr in self._forwards(decision, view, arrival):
            placement.outbox.append({"kind": "forward", "recipient": addr,
                                     "rule_id": decision.matched[-1]
                                     if decision.matched else None})
        if not decision.trash and vacation_active(self.vacation, now) and (
                autoreply.arrived_since(arrival, self.vacation.enabled_at
                                        if self.vacation is not None else None,
                                        self.vacation.starts_at
                                        if self.vacation is not None else None)):
            self._vacation(session, view, now, placement)
        if not (placement.outbox or placement.folder_id or placement.is_read
                or placement.is_flagged):
            return None
        return placement

    def _forwards(self, decision: Decision, view: MailView, arrival: datetime) -> list[str]:
        """The forwards to send: to verified addresses, by rules switched on before the
        message arrived, never for one of our own forwards (the loop marker)."""
        if decision.forward_to and autoreply.is_our_forward(view.headers):
            log.info("account %s: a forwarded message is not forwarded again",
                     self.account_id)
            return []
        out = []
        for addr in decision.forward_to:
            by = [r.id for r in self.rules if r.id in decision.matched and any(
                a.kind == "forward" and a.value.lower() == addr.lower() for a in r.actions)]
            if not any(autoreply.arrived_since(arrival, self.enabled_at.get(rid))
                       for rid in by):
                log.info("account %s: mail from before the rule was switched on is not "
                         "forwarded", self.account_id)
            elif addr.lower() in self.allowed:
                out.append(addr)
            else:
                log.warning("account %s: forward to unverified %s skipped", self.account_id,
                            addr)
        return out

    def _vacation(self, session: Session, view: MailView, now: datetime,
                  placement: Placement) -> None:
        assert self.vacation is not None
        verdict = autoreply.should_reply(view.headers, self.own)
        if not verdict.reply:
            log.debug("account %s: no vacation reply (%s)", self.account_id, verdict.reason)
            return
        sender = verdict.sender[:320]
        last = session.scalar(select(VacationReplied.last_replied_at).where(
            VacationReplied.account_id == self.account_id, VacationReplied.sender == sender))
        interval = timedelta(days=int(self.vacation.interval_days or 7))
        if last is not None:
            if now - last < interval:
                return
            session.execute(update(VacationReplied).where(
                VacationReplied.account_id == self.account_id,
                VacationReplied.sender == sender).values(last_replied_at=now))
        else:
            session.connection().execute(insert(VacationReplied), {
                "account_id": self.account_id, "sender": sender, "last_replied_at": now})
        placement.outbox.append({"kind": "vacation", "recipient": sender, "rule_id": None})

    def committed(self) -> None:
        pass

    def rolled_back(self) -> None:
        self._folders.clear()  # folders created in the lost transaction are gone

    def close(self) -> None:
        if self.regex is not None:
            self.regex.close()


def classifier_for(session: Session, account_id: int, *, clock: Clock = utcnow
                   ) -> FilterClassifier | None:
    """The classifier for a new sink, or None when the account has no filters or reply."""
    rows = list(session.scalars(select(Filter).where(Filter.account_id == account_id,
                                                     Filter.enabled.is_(True))
                                .order_by(Filter.position, Filter.id)))
    reply = get_vacation(session, account_id)
    if not rows and not (reply is not None and reply.enabled):
        return None
    account = session.get(Account, account_id)
    if account is None:
        return None
    own = {a.strip().lower() for a in (account.email, account.send_from, account.pop_username)
           if a and "@" in a}
    if reply is not None:
        session.expunge(reply)  # a plain snapshot: the sink's commits must not expire it
    return FilterClassifier(
        account_id, [rule_of(r) for r in rows], reply, own,
        verified_addresses(session, account.owner_id),
        folder_id_for(session, account_id, FolderRole.TRASH), clock=clock,
        enabled_at={r.id: r.enabled_at for r in rows})


# -- run one rule on existing mail -------------------------------------------------------------


def _stored_view(session: Session, message: Message) -> MailView:
    """A MailView over a stored message, reading at most the header and body limits."""
    buf = b""
    for chunk in iter_raw(session, message.id):
        buf += chunk
        if len(buf) >= HEADER_LIMIT + BODY_READ_LIMIT:
            break
    header = header_section(buf)
    body = buf[header.body_offset:header.body_offset + BODY_READ_LIMIT]
    return MailView(header, int(message.size or 0), lambda: body)


def run_on_existing(session: Session, account_id: int, rule_row: Filter) -> int:
    """Apply one rule to the account's stored mail (not Sent, not Trash); commits.

    Moves, read, flag and delete are applied; forwarding is not (old mail is never sent
    out in bulk by a click). Returns how many messages matched.
    """
    rule = rule_of(rule_row)
    skip = {folder_id_for(session, account_id, FolderRole.SENT),
            folder_id_for(session, account_id, FolderRole.TRASH)}
    trash = folder_id_for(session, account_id, FolderRole.TRASH)
    classifier = FilterClassifier(account_id, [rule], None, set(), set(), trash)
    matched = 0
    try:
        messages = list(session.scalars(select(Message).where(
            Message.account_id == account_id, Message.folder_id.not_in(skip))))
        for message in messages:
            decision = evaluate([rule], _stored_view(session, message), classifier.regex)
            if not decision.matched:
                continue
            matched += 1
            if decision.trash:
                message.folder_id = trash
            elif decision.folder:
                message.folder_id = classifier._folder(session, decision.folder)
            if decision.read:
                message.is_read = True
            if decision.flagged:
                message.is_flagged = True
        session.commit()
    finally:
        classifier.close()
    return matched


__all__ = [
    "FilterClassifier",
    "classifier_for",
    "delete_rule",
    "describe",
    "get_rule",
    "list_rules",
    "move_rule",
    "run_on_existing",
    "save_rule",
    "verified_addresses",
]
