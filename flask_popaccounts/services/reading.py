"""Turn a stored raw message into what a page can show, safely.

- The MIME structure is walked by :mod:`..engine.mimeparts` (no recursion, at most
  ``MAX_DEPTH`` levels and ``MAX_PARTS`` parts): content nested deeper, and attached
  messages, are offered as ``.eml`` attachments instead of being parsed; every
  attachment is downloadable (:func:`read_part`), the original message too.
- Headers are decoded (RFC 2047) with the standard ``email`` package (``policy.default``);
  a header too broken to parse is shown as its raw text, never raises. A field that
  occurs more than once (two Subjects) shows its first occurrence, as the stored
  metadata does; every shown field goes through the one display rule
  (:func:`..engine.parse.display_text`: no control or bidi formatting characters).
- Text parts are decoded with their charset (unknown charsets fall back to UTF-8 with
  replacement characters).
- The HTML part is sanitised with nh3 (ammonia): scripts, forms, frames and event
  handlers go; ``style`` attributes and ``<style>`` go (CSS can fetch: ``url()``,
  ``@import``); images keep only inline ``data:image/...`` sources, so remote images
  (tracking pixels) and ``cid:`` parts are blocked and reported; links keep http(s)
  and mailto targets only and get ``rel="noopener noreferrer"`` and ``target="_blank"``.
  Pages show it through :func:`body_document` in a sandboxed frame with its own
  Content-Security-Policy (``web.security``), so even HTML the sanitiser missed cannot
  run script.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage, Message
from email.utils import parsedate_to_datetime
from typing import Any

import nh3
from sqlalchemy.orm import Session

from ..engine import mimeparts
from ..engine.parse import display_text

#: Tags kept in sanitised HTML: nh3's defaults minus nothing, plus nothing that loads.
_LINK_SCHEMES = {"http", "https", "mailto"}
_MAX_TEXT = 2 * 1024 * 1024  #: characters of one part we show; the rest is cut
_MAX_FIELD = 16 * 1024  #: characters of one header field we show


@dataclass
class Attachment:
    filename: str
    content_type: str
    size: int
    part_id: str = ""  #: for :func:`read_part` (dotted, as in IMAP: "2", "1.3")
    nested: bool = False  #: a container not opened (nested too deep, or a message)


@dataclass
class Download:
    """One part's bytes as a file: decoded content, or the entity as written (.eml)."""

    filename: str
    content_type: str
    data: bytes


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
    too_deep: bool = False  #: content nested deeper than shown (offered as attachments)
    parts_omitted: int = 0  #: parts beyond the listed ones (in the original message)


def read_message(session: Session, message_id: int) -> ReadableMessage:
    """Load a stored message's raw bytes and make them readable."""
    from ..storage.mailbox import read_raw

    return render_raw(read_raw(session, message_id))


def render_raw(raw: bytes) -> ReadableMessage:
    """Parse raw RFC 5322 bytes into a :class:`ReadableMessage`; never raises on bad mail."""
    tree = mimeparts.walk(raw)
    root = mimeparts.headers_of(raw)
    out = ReadableMessage(
        subject=_header(root, "Subject"),
        from_=_header(root, "From"),
        to=_header(root, "To"),
        cc=_header(root, "Cc"),
        reply_to=_header(root, "Reply-To"),
        date_text=_header(root, "Date"),
        too_deep=tree.too_deep,
        parts_omitted=tree.omitted,
    )
    if out.date_text:
        try:
            out.date = parsedate_to_datetime(out.date_text)
        except (TypeError, ValueError, IndexError):
            out.date = None

    texts: list[str] = []
    htmls: list[str] = []
    for leaf in tree.leaves:
        if leaf.opaque:
            out.attachments.append(Attachment(_eml_name(leaf), leaf.content_type,
                                              leaf.end - leaf.start, leaf.part_id, True))
            continue
        part = leaf.message(raw)
        ctype = part.get_content_type()
        disposition = (part.get_content_disposition() or "").lower()
        filename = _filename(part)
        if ctype in ("text/plain", "text/html") and disposition != "attachment" and (
                not filename or disposition == "inline"):
            (texts if ctype == "text/plain" else htmls).append(_text(part))
            continue
        payload = part.get_payload(decode=True)
        size = len(payload) if isinstance(payload, bytes) else 0
        out.attachments.append(Attachment(filename or "(unnamed)", ctype, size, leaf.part_id))

    if texts:
        out.text = "\n\n".join(texts)
    if htmls:
        out.html, out.remote_content_blocked = sanitize_html("\n".join(htmls))
    return out


def read_part(session: Session, message_id: int, part_id: str) -> Download | None:
    """One listed part of a stored message as a file (None: no such part)."""
    from ..storage.mailbox import read_raw

    return part_download(read_raw(session, message_id), part_id)


def part_download(raw: bytes, part_id: str) -> Download | None:
    """The bytes of the part :func:`render_raw` lists under ``part_id``."""
    leaf = mimeparts.find(raw, part_id)
    if leaf is None:
        return None
    if leaf.opaque:
        return Download(_eml_name(leaf), "message/rfc822", leaf.entity(raw))
    part = leaf.message(raw)
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else leaf.entity(raw)[leaf.body_start
                                                                       - leaf.start:]
    return Download(_filename(part) or f"part-{part_id}", part.get_content_type(), data)


def body_document(html: str) -> str:
    """A whole HTML document for a message's sanitised HTML (``html``), for a frame.

    Served by the host with ``web.security.message_body_response`` (sandboxed, its own
    CSP); links open in a new window (``<base target="_blank">``).
    """
    return ("<!doctype html><html><head><meta charset=\"utf-8\">"
            "<base target=\"_blank\"><style>body{margin:0;padding:1rem;"
            "font:15px/1.5 system-ui,sans-serif;overflow-wrap:anywhere}"
            "img{max-width:100%;height:auto}</style></head><body>"
            f"{html}</body></html>")


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
    """The first ``name`` field of ``msg``, decoded, through the display rule."""
    try:
        value: Any = msg.get(name)
    except Exception:  # a header the parser chokes on: show its raw form
        raw = [v for k, v in msg.raw_items() if k.lower() == name.lower()] if isinstance(
            msg, EmailMessage) else []
        value = raw[0] if raw else ""
    if value is None:
        return ""
    return display_text(str(value), _MAX_FIELD)


def _filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except Exception:
        return ""
    return display_text(name or "", 255)


def _eml_name(leaf: mimeparts.MimePart) -> str:
    name = _filename(leaf.headers)
    if name:
        return name if name.lower().endswith(".eml") else f"{name}.eml"
    if leaf.content_type.startswith("message/"):
        return "forwarded message.eml"
    return f"nested part {leaf.part_id}.eml"


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
