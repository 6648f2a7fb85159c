"""The outbox: mail the filters decided to send (forwards, vacation replies), sent later.

Rows of ``popaccounts_outbox`` are written by the store inside a fetched message's own
transaction (:mod:`.filtering`). After each fetch :func:`deliver_after_fetch` sends
what is pending (also callable directly: :func:`deliver_outbox`). Each row is claimed
first (``state = "sending"``, committed), then sent, then marked "sent". A named
transient SMTP failure puts it back to "pending" with a back-off (up to
:data:`MAX_ATTEMPTS`); anything else marks it "failed". A crash between the claim and
the result leaves it "sending", which is never sent again automatically: a forward may
be lost in that window, but is never sent twice.

Forwarding goes only to addresses the owner has verified (any verified send-as address
of the owner's accounts: the user proved they read that mailbox), through the account's
own route (:func:`.outgoing.route_for`), from the account's verified From address. The
forwarded message is attached whole (message/rfc822). Vacation replies go out with the
null envelope sender (RFC 3834). What we write in them ourselves (a forward's note, a
reply's default subject) is in the owner's language (:func:`.texts.owner_locale`).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..engine import autoreply, message, safety, smtp
from ..engine.errors import PopAccountsError
from ..engine.mailview import MailView
from ..engine.parse import header_section
from ..i18n import gettext as _
from ..i18n import in_locale, isolate
from ..runtime import get_state
from ..storage.mailbox import read_raw
from ..storage.models import Account, OutboxItem
from . import filtering, health, outgoing, sendas, vacation
from .texts import owner_locale

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("flask_popaccounts.services.outbox")

MAX_ATTEMPTS = 5
#: the first retry after a transient failure; then doubling (services.health)
RETRY_BASE_SECONDS = 60.0
RETRY_MAX_SECONDS = 3600.0


def _original(session: Session, message_id: int | None) -> bytes:
    if message_id is None:
        raise PopAccountsError(detail="the message was deleted before it could be sent")
    return read_raw(session, message_id)


def _cte_of(raw: bytes) -> str:
    """The transfer encoding a message/rfc822 part may declare for ``raw`` (RFC 2046:
    7bit or 8bit only; our lines are CRLF, at most 998 octets in well-formed mail)."""
    return "7bit" if raw.isascii() else "8bit"


def _build(session: Session, account: Account, item: OutboxItem, from_addr: Address,
           now: datetime) -> EmailMessage:
    raw = _original(session, item.message_id)
    view = MailView(header_section(raw), len(raw))
    # Copied from mail someone else wrote: made safe, not refused (engine/safety)
    subject = safety.clean_header_text(view.header("subject"))
    if item.kind == "forward":
        if item.recipient.lower() not in filtering.verified_addresses(session, account.owner_id):
            raise sendas.AddressNotVerified(detail="forward target no longer verified")
        # ("Fwd:" stays as it is in every language: mail clients thread by it)
        msg = message.build_message(
            from_=from_addr, to=[Address(addr_spec=item.recipient)],
            subject=f"Fwd: {subject}" if subject else _("Fwd: (no subject)"),
            body="\n".join([_("Forwarded automatically by a filter of %(address)s.",
                               address=isolate(account.email)),
                             _("The original message is attached."), ""]), date=now)
        # The loop marker: a forward that comes back is never forwarded again
        # (services.filtering); Auto-Submitted keeps out-of-office robots from answering.
        safety.check_header_fields(loop_marker=account.email)  # a row from before checks
        msg[autoreply.LOOP_HEADER] = account.email
        msg["Auto-Submitted"] = "auto-generated"
        # The original attached byte for byte, never parsed and written again: no
        # message is altered on the way, and no nesting depth can exhaust the stack.
        msg.add_attachment(raw, maintype="message", subtype="rfc822", cte=_cte_of(raw))
        return msg
    reply = vacation.get_vacation(session, account.id)
    if reply is None:
        raise PopAccountsError(detail="vacation reply removed")
    return autoreply.build_reply(
        from_=from_addr, to=item.recipient, original_subject=subject,
        original_message_id=safety.clean_header_text(view.header("message-id")),
        original_references=safety.clean_header_text(view.header("references")),
        subject=reply.subject, body=reply.body, date=now,
        no_subject=_(autoreply.NO_SUBJECT_REPLY))  # (the user's own text is never translated)


def _send_item(session: Session, app: Flask, item: OutboxItem) -> None:
    account = session.get(Account, item.account_id)
    if account is None:
        raise PopAccountsError(detail="account gone")
    route = outgoing.route_for(session, app, account)
    # Our own words in it (a forward's note, a reply's default subject) are in the owner's
    # language: the host's locale hook, else the current (the site's default after a fetch)
    with in_locale(owner_locale(app, account.owner_id)):
        msg = _build(session, account, item, route.from_addr, get_state(app).clock())
    route.stamp(msg)
    # RFC 3834 3.3: a vacation reply has the null sender, so nothing answers it
    envelope = "" if item.kind == "vacation" else route.envelope_from
    smtp.send(route.server, route.creds, net=route.net, mail_from=envelope,
              rcpt_to=[item.recipient], data=message.message_bytes(msg),
              local_hostname=outgoing.local_hostname(app))


def _claim(session: Session, item_id: int) -> OutboxItem | None:
    claimed = session.execute(  # type: ignore[attr-defined]
        update(OutboxItem).where(OutboxItem.id == item_id, OutboxItem.state == "pending")
        .values(state="sending", attempts=OutboxItem.attempts + 1)
        .execution_options(synchronize_session=False)).rowcount
    session.commit()
    return session.get(OutboxItem, item_id) if claimed else None  # else: another took it


def _deliver_one(app: Flask, session: Session, item: OutboxItem, now: datetime) -> bool:
    """Send one claimed row and record the result; commits; True when sent."""
    sent = False
    try:
        _send_item(session, app, item)
    except PopAccountsError as exc:
        session.rollback()
        item.last_error = f"{exc.code}: {exc.detail or ''}"[:200]
        if exc.transient and item.attempts < MAX_ATTEMPTS:
            item.state = "pending"
            item.next_attempt_at = now + timedelta(seconds=health.backoff_seconds(
                item.attempts, base=RETRY_BASE_SECONDS, cap=RETRY_MAX_SECONDS))
        else:
            item.state = "failed"
        log.warning("outbox %s (%s to %s) failed: %s", item.id, item.kind,
                    item.recipient, item.last_error)
    except Exception as exc:  # a bug, or the database: do not risk a second send
        session.rollback()
        item.state = "failed"
        item.last_error = f"internal_error: {type(exc).__name__}"[:200]
        log.exception("outbox %s crashed", item.id)
    else:
        item.state = "sent"
        item.sent_at = get_state(app).clock()
        item.last_error = None
        sent = True
    session.commit()
    return sent


def deliver_outbox(app: Flask, account_id: int | None = None, *,
                   now: datetime | None = None) -> int:
    """Send what is pending (one account, or all); returns how many were sent."""
    state = get_state(app)
    now = now or state.clock()
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
            item = _claim(session, item_id)
            if item is not None and _deliver_one(app, session, item, now):
                sent += 1
    return sent


def deliver_after_fetch(app: Flask, account_id: int) -> None:
    """After a fetch ends (success or failure): send its outbox; nothing escapes."""
    try:
        deliver_outbox(app, account_id)
    except Exception:
        log.exception("sending the outbox of account %s failed", account_id)


def outbox_items(session: Session, account_id: int) -> list[OutboxItem]:
    """The account's outbox, newest first (for pages and tests)."""
    return list(session.scalars(select(OutboxItem).where(OutboxItem.account_id == account_id)
                                .order_by(OutboxItem.id.desc())))
