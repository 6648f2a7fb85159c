"""Turn a stored raw message into what a page can show, safely.

- Headers are decoded (RFC 2047) with the standard ``email`` package (``policy.default``);
  a header too broken to parse is shown as its raw text, never raises.
- Text parts are decoded with their charset (unknown charsets fall back to UTF-8 with
  replacement characters).
- The HTML part is sanitised with nh3 (ammonia): scripts, forms, frames and event
  handlers go; ``style`` attributes and ``<style>`` go (CSS can fetch: ``url()``,
  ``@import``); images keep only inline ``data:image/...`` sources, so remote images
  (tracking pixels) and ``cid:`` parts are blocked and reported; links keep http(s)
  and mailto targets only and get ``rel="noopener noreferrer"`` and ``target="_blank"``.
- Attachments are listed (name, type, size), not rendered.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage, Message
from email.utils import parsedate_to_datetime
from typing import Any

import nh3
from sqlalchemy.orm import Session

#: Tags kept in sanitised HTML: nh3's defaults minus nothing, plus nothing that loads.
_LINK_SCHEMES = {"http", "https", "mailto"}
_MAX_TEXT = 2 * 1024 * 1024  #: characters of one part we show; the rest is cut


@dataclass
class Attachment:
    filename: str
    content_type: str
    size: int


@dataclass
class ReadableMessage:
    """What a message page shows. ``html`` is already sanitised (safe to mark safe)."""

    subject: str = ""
    from_: str = ""
    to: str = ""
    cc: str = ""
    reply_to: str = ""
    date: datetime | None = None
    date_text: str = ""
    text: str | None = None
    html: str | None = None
    remote_content_blocked: bool = False
    attachments: list[Attachment] = field(default_factory=list)


def read_message(session: Session, message_id: int) -> ReadableMessage:
    """Load a stored message's raw bytes and make them readable."""
    from ..storage.mailbox import read_raw

    return render_raw(read_raw(session, message_id))


def render_raw(raw: bytes) -> ReadableMessage:
    """Parse raw RFC 5322 bytes into a :class:`ReadableMessage`; never raises on bad mail."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    out = ReadableMessage(
        subject=_header(msg, "Subject"),
        from_=_header(msg, "From"),
        to=_header(msg, "To"),
        cc=_header(msg, "Cc"),
        reply_to=_header(msg, "Reply-To"),
        date_text=_header(msg, "Date"),
    )
    if out.date_text:
        try:
            out.date = parsedate_to_datetime(out.date_text)
        except (TypeError, ValueError, IndexError):
            out.date = None

    texts: list[str] = []
    htmls: list[str] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        disposition = (part.get_content_disposition() or "").lower()
        filename = _filename(part)
        if disposition == "attachment" or (filename and disposition != "inline") or (
            not ctype.startswith("text/") and ctype != "message/rfc822"
        ):
            payload = part.get_payload(decode=True)
            size = len(payload) if isinstance(payload, bytes) else 0
            out.attachments.append(Attachment(filename or "(unnamed)", ctype, size))
            continue
        if ctype == "text/plain":
            texts.append(_text(part))
        elif ctype == "text/html":
            htmls.append(_text(part))
        elif ctype == "message/rfc822":
            out.attachments.append(Attachment(filename or "forwarded message.eml", ctype, 0))
        else:  # other text/* (calendar, csv...): offer as attachment
            payload = part.get_payload(decode=True)
            size = len(payload) if isinstance(payload, bytes) else 0
            out.attachments.append(Attachment(filename or "(unnamed)", ctype, size))

    if texts:
        out.text = "\n\n".join(texts)
    if htmls:
        out.html, out.remote_content_blocked = sanitize_html("\n".join(htmls))
    return out


def sanitize_html(html: str) -> tuple[str, bool]:
    """Clean untrusted mail HTML; returns (safe_html, remote_content_was_blocked)."""
    blocked = False

    def attribute_filter(tag: str, attr: str, value: str) -> str | None:
        nonlocal blocked
        low = value.strip().lower()
        if attr == "src":
            if tag == "img" and low.startswith("data:image/") and not low.startswith(
                "data:image/svg"
            ):
                return value
            blocked = True  # remote (or cid:) image: not loaded
            return None
        if attr == "href":
            scheme = low.split(":", 1)[0] if ":" in low else ""
            if scheme and scheme not in _LINK_SCHEMES:
                return None
            return value
        return value

    clean = nh3.clean(
        html[:_MAX_TEXT],
        url_schemes=_LINK_SCHEMES | {"data"},
        link_rel="noopener noreferrer",
        attribute_filter=attribute_filter,
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )
    return clean, blocked


# -- helpers ----------------------------------------------------------------------------

def _header(msg: Message, name: str) -> str:
    try:
        value: Any = msg.get(name)
    except Exception:  # a header the parser chokes on: show its raw form
        raw = [v for k, v in msg.raw_items() if k.lower() == name.lower()] if isinstance(
            msg, EmailMessage) else []
        value = raw[0] if raw else ""
    if value is None:
        return ""
    text = str(value)
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()


def _filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except Exception:
        return ""
    return "".join(ch for ch in (name or "") if ch.isprintable()).strip()


def _text(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
        if isinstance(content, str):
            return content[:_MAX_TEXT]
    except (LookupError, UnicodeError, ValueError, AssertionError):
        pass
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, "replace")[:_MAX_TEXT]
        except LookupError:
            return payload.decode("utf-8", "replace")[:_MAX_TEXT]
    return ""
