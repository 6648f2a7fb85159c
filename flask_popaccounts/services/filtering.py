"""Filters and the vacation reply, applied at fetch time inside the durable step (R1).

How a fetched message meets the account's rules:

1. Every :class:`~..store.SqlSink` asks the factory registered here
   (:func:`classifier_for`) for a :class:`FilterClassifier`. It loads the account's
   enabled rules (in order), its vacation settings and the addresses forwarding may go
   to, once per fetch session; an account with neither gets no classifier at all.
2. In ``SqlSink.add`` the classifier decides the message's folder (created on demand),
   read and flagged state *before* its row is inserted, and returns the mail to send
   (forward, vacation reply) as outbox rows that the sink inserts in the same
   transaction. The vacation memory (:class:`~..models.VacationReplied`) is written
   there too. So a crash leaves either the message with all its filter effects and
   its outbox rows, or none of it (and the message is fetched again, and filtered
   once).
3. After the fetch, :func:`deliver_outbox` sends what is pending (signals
   ``account_fetched`` / ``account_failed``; also callable directly). Each row is
   claimed first (``state = "sending"``, committed), then sent, then marked "sent".
   A named transient SMTP failure puts it back to "pending" with a back-off (up to
   :data:`MAX_ATTEMPTS`); anything else marks it "failed". A crash between the claim
   and the result leaves it "sending", which is never sent again automatically: a
   forward may be lost in that window, but is never sent twice.

Forwarding goes only to addresses the owner has verified (any verified send-as address
of the owner's accounts: the user proved they read that mailbox), through the account's
own SMTP server (or the host's relay when the account uses it), from the account's
verified From address. The forwarded message is attached whole (message/rfc822).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from ..engine import autoreply, smtp
from ..engine.errors import PopAccountsError
from ..engine.filters import (
    BODY_READ_LIMIT,
    Decision,
    MailView,
    RegexRunner,
    Rule,
    evaluate,
    load_rule,
    needs_regex,
    validate,
)
from ..engine.parse import read_header_section
from ..engine.types import RetrievedMessage, Security, ServerSpec
from ..runtime import get_state
from ..signals import account_failed, account_fetched
from ..storage.mailstore import Placement, folder_id_for, iter_raw, read_raw, set_classifier_factory
from ..storage.models import (
    Account,
    Filter,
    Folder,
    FolderRole,
    Message,
    OutboxItem,
    SendAsAddress,
    Vacation,
    VacationReplied,
    utcnow,
    value_of,
)
from . import sending

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("flask_popaccounts.services.filtering")

MAX_ATTEMPTS = 5
RETRY_BASE_SECONDS = 60.0
MAX_RULES = 100


def _now() -> datetime:
    return datetime.now(timezone.utc)


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


def save_rule(session: Session, account: Account, *, name: str, match_all: bool, enabled: bool,
              conditions: list[dict[str, Any]], actions: list[dict[str, Any]],
              rule: Filter | None = None) -> Filter:
    """Validate and store a rule (new ones go last); commits. Raises RuleInvalid."""
    allowed = verified_addresses(session, account.owner_id)
    conds, acts = validate(conditions, actions, name=name,
                           forward_allowed=lambda a: a.lower() in allowed)
    if rule is None:
        count = session.scalar(select(func.count()).select_from(Filter)
                               .where(Filter.account_id == account.id)) or 0
        if count >= MAX_RULES:
            from ..engine.filters import RuleInvalid

            raise RuleInvalid([f"An account can have at most {MAX_RULES} rules."])
        last = session.scalar(select(func.max(Filter.position))
                              .where(Filter.account_id == account.id))
        rule = Filter(account_id=account.id, position=int(last or 0) + 1)
        session.add(rule)
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


# -- vacation settings -------------------------------------------------------------------------


@dataclass
class VacationInput:
    enabled: bool
    starts_on: str  #: YYYY-MM-DD or ""
    ends_on: str
    subject: str
    body: str
    interval_days: int = 7


def get_vacation(session: Session, account_id: int) -> Vacation | None:
    return session.scalar(select(Vacation).where(Vacation.account_id == account_id))


def _day(text: str, field: str, problems: list[str]) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        problems.append(f"The {field} date must look like 2026-07-31.")
        return None


def save_vacation(session: Session, account: Account, data: VacationInput) -> Vacation:
    """Validate and store the vacation reply; commits. Raises RuleInvalid with problems.

    Dates are whole days (UTC): it replies from the start of the first day to the end
    of the last one; an empty date leaves that side open.
    """
    from ..engine.filters import RuleInvalid

    problems: list[str] = []
    starts = _day(data.starts_on, "first", problems)
    ends = _day(data.ends_on, "last", problems)
    if starts and ends and ends < starts:
        problems.append("The last day is before the first day.")
    subject = " ".join(data.subject.split())
    if len(subject) > 200:
        problems.append("The subject is longer than 200 characters.")
    if data.enabled and not data.body.strip():
        problems.append("Write the reply's text.")
    if len(data.body) > 20000:
        problems.append("The text is longer than 20,000 characters.")
    if not 1 <= int(data.interval_days) <= 365:
        problems.append("Reply to the same sender again after 1 to 365 days.")
    if problems:
        raise RuleInvalid(problems)
    row = get_vacation(session, account.id)
    if row is None:
        row = Vacation(account_id=account.id)
        session.add(row)
    row.enabled = bool(data.enabled)
    row.starts_at = starts
    row.ends_at = ends + timedelta(days=1) if ends else None
    row.subject = subject
    row.body = data.body.replace("\r\n", "\n")
    row.interval_days = int(data.interval_days)
    session.commit()
    return row


def vacation_active(row: Vacation | None, now: datetime) -> bool:
    if row is None or not row.enabled or not row.body.strip():
        return False
    if row.starts_at is not None and now < row.starts_at:
        return False
    return not (row.ends_at is not None and now >= row.ends_at)


# -- the classifier (inside the sink's transaction) ---------------------------------------------


class FilterClassifier:
    """The account's filters and vacation reply, for one fetch session (one sink)."""

    def __init__(self, account_id: int, rules: list[Rule], vacation: Vacation | None,
                 own: set[str], allowed: set[str], trash_id: int) -> None:
        self.account_id = account_id
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

    def classify(self, session: Session, message: RetrievedMessage) -> Placement | None:
        spool = message.spool
        header = read_header_section(spool)

        def body_source() -> bytes:
            spool.seek(len(header))
            data = spool.read(BODY_READ_LIMIT)
            spool.seek(0)
            return data

        view = MailView(header, message.size, body_source)
        try:
            decision = evaluate(self.rules, view, self.regex)
        finally:
            spool.seek(0)
        self.decisions.append(decision)
        for err in decision.errors:
            log.warning("account %s, message %s: %s", self.account_id, message.uidl, err)
        placement = Placement(is_read=decision.read, is_flagged=decision.flagged)
        if decision.trash:
            placement.folder_id = self.trash_id
        elif decision.folder:
            placement.folder_id = self._folder(session, decision.folder)
        for addr in decision.forward_to:
            if addr.lower() in self.allowed:
                placement.outbox.append({"kind": "forward", "recipient": addr,
                                         "rule_id": decision.matched[-1]
                                         if decision.matched else None})
            else:
                log.warning("account %s: forward to unverified %s skipped", self.account_id,
                            addr)
        now = utcnow()
        if not decision.trash and vacation_active(self.vacation, now):
            self._vacation(session, view, now, placement)
        if not (placement.outbox or placement.folder_id or placement.is_read
                or placement.is_flagged):
            return None
        return placement

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


def classifier_for(session: Session, account_id: int) -> FilterClassifier | None:
    """The classifier for a new sink, or None when the account has no filters or reply."""
    rows = list(session.scalars(select(Filter).where(Filter.account_id == account_id,
                                                     Filter.enabled.is_(True))
                                .order_by(Filter.position, Filter.id)))
    vacation = get_vacation(session, account_id)
    if not rows and not (vacation is not None and vacation.enabled):
        return None
    account = session.get(Account, account_id)
    if account is None:
        return None
    own = {a.strip().lower() for a in (account.email, account.send_from, account.pop_username)
           if a and "@" in a}
    if vacation is not None:
        session.expunge(vacation)  # a plain snapshot: the sink's commits must not expire it
    return FilterClassifier(
        account_id, [rule_of(r) for r in rows], vacation, own,
        verified_addresses(session, account.owner_id),
        folder_id_for(session, account_id, FolderRole.TRASH))


set_classifier_factory(classifier_for)


# -- after the commit: the outbox --------------------------------------------------------------


def _route(session: Session, app: Flask, account: Account
           ) -> tuple[ServerSpec, Any, Any, Address, str, Address | None]:
    """(server, creds, net, From, envelope sender, Sender header) to send as the account."""
    addr = (account.send_from or account.email).strip()
    if not sending._verified(session, account, "from", addr):
        raise sending.AddressNotVerified(detail=f"from: account {account.id}")
    from_addr = Address(display_name=account.name if account.name != account.email else "",
                        addr_spec=smtp.check_addr_spec(addr))
    if account.smtp_host:
        username, creds = sending._outgoing_creds(app, account)
        server = ServerSpec(host=account.smtp_host, port=int(account.smtp_port or 0),
                            security=Security(account.smtp_security or "ssl"), username=username)
        return server, creds, sending.smtp_net_policy(app), from_addr, from_addr.addr_spec, None
    server, creds, net, system_from = sending.system_relay(app)
    system_addr = smtp.parse_address(system_from, field="sender")
    return server, creds, net, from_addr, system_addr.addr_spec, system_addr


def _original(session: Session, message_id: int | None) -> bytes:
    if message_id is None:
        raise PopAccountsError(detail="the message was deleted before it could be sent")
    return read_raw(session, message_id)


def _build(session: Session, account: Account, item: OutboxItem, from_addr: Address
           ) -> EmailMessage:
    raw = _original(session, item.message_id)
    header = raw[: raw.find(b"\r\n\r\n") + 4] if b"\r\n\r\n" in raw else raw
    view = MailView(header, len(raw))
    subject = view.header("subject")
    if item.kind == "forward":
        if item.recipient.lower() not in verified_addresses(session, account.owner_id):
            raise sending.AddressNotVerified(detail="forward target no longer verified")
        msg = smtp.build_message(
            from_=from_addr, to=[Address(addr_spec=item.recipient)],
            subject=f"Fwd: {subject}" if subject else "Fwd: (no subject)",
            body=(f"Forwarded automatically by a filter of {account.email}.\n"
                  f"The original message is attached.\n"))
        original = BytesParser(policy=email_policy.SMTP).parsebytes(raw)
        msg.add_attachment(original)
        return msg
    vacation = get_vacation(session, account.id)
    if vacation is None:
        raise PopAccountsError(detail="vacation reply removed")
    return autoreply.build_reply(
        from_=from_addr, to=item.recipient, original_subject=subject,
        original_message_id=view.header("message-id"),
        original_references=view.header("references"), subject=vacation.subject,
        body=vacation.body)


def _send_item(session: Session, app: Flask, item: OutboxItem) -> None:
    account = session.get(Account, item.account_id)
    if account is None:
        raise PopAccountsError(detail="account gone")
    server, creds, net, from_addr, envelope, sender_hdr = _route(session, app, account)
    msg = _build(session, account, item, from_addr)
    if sender_hdr is not None:
        msg["Sender"] = sender_hdr
    if item.kind == "vacation":
        envelope = ""  # RFC 3834 3.3: the null sender, so nothing answers an auto-reply
    smtp.send(server, creds, net=net, mail_from=envelope, rcpt_to=[item.recipient],
              data=smtp.message_bytes(msg), local_hostname=sending._local_hostname(app))


def deliver_outbox(app: Flask, account_id: int | None = None, *,
                   now: datetime | None = None) -> int:
    """Send what is pending (one account, or all); returns how many were sent."""
    state = get_state(app)
    now = now or _now()
    with state.session_factory() as session:
        stmt = select(OutboxItem.id).where(
            OutboxItem.state == "pending",
            (OutboxItem.next_attempt_at.is_(None)) | (OutboxItem.next_attempt_at <= now))
        if account_id is not None:
            stmt = stmt.where(OutboxItem.account_id == account_id)
        ids = list(session.scalars(stmt.order_by(OutboxItem.id)))
    sent = 0
    for item_id in ids:
        with state.session_factory() as session:
            claimed = session.execute(  # type: ignore[attr-defined]
                update(OutboxItem).where(OutboxItem.id == item_id, OutboxItem.state == "pending")
                .values(state="sending", attempts=OutboxItem.attempts + 1)
                .execution_options(synchronize_session=False)).rowcount
            session.commit()
            if not claimed:
                continue  # another process took it
            item = session.get(OutboxItem, item_id)
            assert item is not None
            try:
                _send_item(session, app, item)
            except PopAccountsError as exc:
                session.rollback()
                item.last_error = f"{exc.code}: {exc.detail or ''}"[:200]
                if exc.transient and item.attempts < MAX_ATTEMPTS:
                    item.state = "pending"
                    item.next_attempt_at = now + timedelta(
                        seconds=RETRY_BASE_SECONDS * 2 ** (item.attempts - 1))
                else:
                    item.state = "failed"
                log.warning("outbox %s (%s to %s) failed: %s", item.id, item.kind,
                            item.recipient, item.last_error)
            except Exception as exc:  # a bug, or the database: do not risk a second send
                session.rollback()
                item.state = "failed"
                item.last_error = f"internal_error: {type(exc).__name__}"[:200]
                log.exception("outbox %s crashed", item_id)
            else:
                item.state = "sent"
                item.sent_at = _now()
                item.last_error = None
                sent += 1
            session.commit()
    return sent


def _after_fetch(sender: Any, **kw: Any) -> None:
    """Signal handler: send the outbox after a fetch ends (a failure must not escape)."""
    try:
        deliver_outbox(sender, kw.get("account_id"))
    except Exception:
        log.exception("sending the outbox of account %s failed", kw.get("account_id"))


account_fetched.connect(_after_fetch, weak=False)
account_failed.connect(_after_fetch, weak=False)


# -- run one rule on existing mail -------------------------------------------------------------


def _stored_view(session: Session, message: Message) -> MailView:
    """A MailView over a stored message, reading at most the header and body limits."""
    buf = b""
    for chunk in iter_raw(session, message.id):
        buf += chunk
        if len(buf) >= 256 * 1024 + BODY_READ_LIMIT:
            break
    end = buf.find(b"\r\n\r\n")
    cut = end + 4 if end >= 0 else len(buf)
    header, body = buf[:cut], buf[cut:cut + BODY_READ_LIMIT]
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


def outbox_items(session: Session, account_id: int) -> list[OutboxItem]:
    """The account's outbox, newest first (for pages and tests)."""
    return list(session.scalars(select(OutboxItem).where(OutboxItem.account_id == account_id)
                                .order_by(OutboxItem.id.desc())))


__all__ = [
    "FilterClassifier",
    "VacationInput",
    "classifier_for",
    "delete_rule",
    "deliver_outbox",
    "get_rule",
    "get_vacation",
    "list_rules",
    "move_rule",
    "outbox_items",
    "run_on_existing",
    "save_rule",
    "save_vacation",
    "vacation_active",
    "value_of",
    "verified_addresses",
]
