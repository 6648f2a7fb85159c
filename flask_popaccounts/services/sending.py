"""Sending the user's own mail as an account (R9-R11): build, check, send, file in Sent.

:func:`send_message` refuses, before anything leaves, what must not go out whatever the
page offered: a From or Reply-To that is not verified (:mod:`.sendas`), CR/LF or
control characters in any header field, addresses that do not parse strictly, and a
message whose copy in Sent would not fit the owner's storage (R19). It leaves by the
account's route (:func:`.outgoing.route_for`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from ..engine import addresses, message, safety, smtp
from ..engine.errors import InvalidAddress, PopAccountsError
from ..engine.parse import header_section, parse_meta
from ..i18n import N_
from ..i18n import gettext as _
from ..runtime import get_state
from ..storage.mailstore import file_sent
from ..storage.models import Account
from . import outgoing, sendas
from .quota import space_left

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("flask_popaccounts.services.sending")


class StorageFullForSent(PopAccountsError):
    code = "storage_full_send"
    title = N_("Your mail storage is full")
    help = N_(
        "The message was not sent: its copy in Sent would not fit in your storage. Free "
        "space on the Storage page (empty Trash, delete old mail) and send it again."
    )


@dataclass
class SentResult:
    message_id: str
    sent_copy_id: int
    refused: dict[str, Any] = field(default_factory=dict)


def bcc_header(bcc: list[Address]) -> bytes:
    """The ``Bcc:`` field of the Sent copy (folded, RFC 2047 as the other headers), or b"".

    Only the sender's own copy carries it (every webmail keeps it there); the bytes
    handed to the SMTP server never do (RFC 5322 3.6.3).
    """
    if not bcc:
        return b""
    safety.check_address_parts("bcc", bcc)
    head = EmailMessage(policy=policy.SMTP)
    head["Bcc"] = bcc
    return head.as_bytes().split(b"\r\n\r\n", 1)[0] + b"\r\n"


# -- compose -------------------------------------------------------------------------------


@dataclass
class Draft:
    """A message the user wrote (fields as typed; everything is checked in send_message)."""

    to: str
    subject: str
    body: str
    cc: str = ""
    bcc: str = ""
    in_reply_to: str = ""
    references: str = ""
    #: optional HTML alternative of ``body``: the caller makes it safe (the user's text
    #: escaped, only a sanitised signature as HTML: ``services.settings.html_body``)
    html: str = ""


def send_message(session: Session, app: Flask, account: Account, draft: Draft, *,
                 now: datetime | None = None) -> SentResult:
    """Build, check, send through the account's server and file a copy in Sent; commits.

    Refused here (server side), whatever the page offered: a From or Reply-To that is not
    verified (:class:`AddressNotVerified`), CR/LF or control characters in any header
    field (:class:`~..engine.errors.HeaderInjection`), addresses that do not parse
    strictly (:class:`~..engine.errors.InvalidAddress`).
    """
    reply_to = (account.reply_to or "").strip()
    safety.check_header_fields(to=draft.to, cc=draft.cc, bcc=draft.bcc, subject=draft.subject,
                               in_reply_to=draft.in_reply_to, references=draft.references)
    route = outgoing.route_for(session, app, account)  # the From must be verified
    use_reply_to = bool(reply_to) and reply_to.lower() != account.email.strip().lower()
    if use_reply_to and not sendas.is_verified(session, account, "reply_to", reply_to):
        raise sendas.AddressNotVerified(detail=f"reply_to: account {account.id}")
    to = addresses.parse_addresses(draft.to, field="to")
    cc = addresses.parse_addresses(draft.cc, field="cc")
    bcc = addresses.parse_addresses(draft.bcc, field="bcc")
    if not (to or cc or bcc):
        raise InvalidAddress(_("Add at least one recipient."))
    now = now or get_state(app).clock()
    msg = message.build_message(
        from_=route.from_addr, to=to, cc=cc, subject=draft.subject, body=draft.body,
        # (a Reply-To equal to the account's own address needs no verification)
        reply_to=Address(addr_spec=addresses.check_addr_spec(reply_to)) if reply_to else None,
        in_reply_to=draft.in_reply_to.strip() or None,
        references=draft.references.strip() or None,
        date=now,
    )
    if draft.html:
        msg.add_alternative(draft.html, subtype="html")
    rcpts = [a.addr_spec for a in (*to, *cc, *bcc)]
    route.stamp(msg)
    data = message.message_bytes(msg)  # what leaves: never a Bcc header
    copy = bcc_header(bcc) + data  # the sender's own copy keeps whom they blind-copied
    # Like the big webmails: no room for the Sent copy, no sending (R19). Checked before
    # anything leaves, so a refused message was not sent either.
    left = space_left(app, session, account.owner_id)
    if left is not None and len(copy) > left:
        raise StorageFullForSent(detail=f"account {account.id}: {left} bytes left")
    refused = smtp.send(route.server, route.creds, net=route.net,
                        mail_from=route.envelope_from, rcpt_to=rcpts, data=data,
                        local_hostname=outgoing.local_hostname(app))
    meta = parse_meta(header_section(copy), len(copy), now)
    copy_id = file_sent(session, account.id, copy, meta, now=now)
    session.commit()
    log.info("account %s sent a message to %d recipients", account.id, len(rcpts))
    return SentResult(message_id=str(msg["Message-ID"]), sent_copy_id=copy_id,
                      refused={k: v[0] for k, v in refused.items()})
