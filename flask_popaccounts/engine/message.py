"""Outgoing messages built with the ``email`` package, every header value checked first.

:func:`build_message` refuses (with :class:`~.errors.HeaderInjection`) any value that
holds a control character, as written or hidden in an RFC 2047 encoded word, before the
message exists; :func:`message_bytes` is the wire form handed to :func:`.smtp.send`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from .clock import Clock, utcnow
from .safety import check_address_parts, check_header_fields


def build_message(
    *,
    from_: Address,
    to: Sequence[Address],
    cc: Sequence[Address] = (),
    subject: str,
    body: str,
    reply_to: Address | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    date: datetime | None = None,
    message_id: str | None = None,
    clock: Clock = utcnow,
) -> EmailMessage:
    """A MIME message built with ``email`` and ``policy.default`` (RFC 2047 on output).

    Date (``date``, else ``clock()``) and Message-ID are always set; Bcc never appears
    (pass it to the envelope only).
    """
    check_header_fields(subject=subject, in_reply_to=in_reply_to, references=references,
                        message_id=message_id)
    check_address_parts("from", [from_])
    check_address_parts("to", to)
    check_address_parts("cc", cc)
    check_address_parts("reply_to", [reply_to] if reply_to is not None else [])
    msg = EmailMessage(policy=policy.default)
    msg["From"] = from_
    if to:
        msg["To"] = list(to)
    if cc:
        msg["Cc"] = list(cc)
    if reply_to is not None:
        msg["Reply-To"] = reply_to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or clock())
    domain = from_.domain or "localhost"
    msg["Message-ID"] = message_id or make_msgid(domain=domain)
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    msg.set_content(body.replace("\r\n", "\n"))
    return msg


def message_bytes(msg: EmailMessage) -> bytes:
    """The wire form: CRLF line ends, non-ASCII headers encoded per RFC 2047."""
    return msg.as_bytes(policy=policy.SMTP)
