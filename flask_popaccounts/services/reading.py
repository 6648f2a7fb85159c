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

The mailbox side for a host's pages (the host checks the account is the user's, with
``accounts.get_owned_account``; every call here is restricted to that account): its
folders with their counts (:func:`folders`), a folder's mail newest first by sent date
(:func:`list_folder`), opening a message (:func:`open_message` marks it read), and the
actions :func:`mark`, :func:`move` and :func:`delete_messages` (to Trash; in Trash, for
good, which frees the quota).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage, Message
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import nh3
from sqlalchemy.orm import Session

from ..engine import mimeparts
from ..engine.parse import display_text
from ..storage import mailbox as store
from ..storage.models import Account, FolderRole, value_of
from ..storage.models import Message as StoredMessage
from .quota import resume_if_room

if TYPE_CHECKING:
    from flask import Flask

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
    return render_raw(store.read_raw(session, message_id))


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
    return part_download(store.read_raw(session, message_id), part_id)


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


# -- folders and message actions ---------------------------------------------------------


@dataclass
class FolderItem:
    """One folder as a side pane lists it. ``role`` is "inbox", "sent", "trash" or
    "custom" (a folder a filter files mail into: its ``name`` is the user's own text)."""

    id: int
    account_id: int
    name: str
    role: str
    total: int = 0
    unread: int = 0


@dataclass
class Deleted:
    """What :func:`delete_messages` did: moved to Trash, and deleted for good (bytes)."""

    trashed: int = 0
    deleted: int = 0
    bytes_freed: int = 0


def folders(session: Session, account_ids: Collection[int]) -> dict[int, list[FolderItem]]:
    """Each account's folders, Inbox, Sent and Trash first, then the others by name,
    with how many messages each holds and how many are unread."""
    counts = store.folder_counts(session, account_ids)
    out: dict[int, list[FolderItem]] = {}
    for account_id in account_ids:
        out[account_id] = [
            FolderItem(f.id, f.account_id, f.name, value_of(f.role),
                       *counts.get(f.id, (0, 0)))
            for f in store.list_folders(session, account_id)]
    return out


def folder(session: Session, account_id: int, folder_id: int | None = None
           ) -> FolderItem | None:
    """One of the account's folders (None: its Inbox), or None if it has no such folder."""
    if folder_id is None:
        try:
            folder_id = store.folder_id_for(session, account_id, FolderRole.INBOX)
        except LookupError:
            return None
    row = store.get_folder(session, account_id, folder_id)
    if row is None:
        return None
    total, unread = store.folder_counts(session, [account_id]).get(row.id, (0, 0))
    return FolderItem(row.id, row.account_id, row.name, value_of(row.role), total, unread)


def list_folder(session: Session, account_id: int, folder_id: int, *, limit: int = 50,
                offset: int = 0) -> list[StoredMessage]:
    """The folder's messages, newest first by their sent date (R18)."""
    return store.list_messages(session, account_id, folder_id, limit=limit, offset=offset)


def get_message(session: Session, account_id: int, message_id: int) -> StoredMessage | None:
    """One stored message, only if it belongs to that account."""
    return store.get_message(session, account_id, message_id)


def messages(session: Session, account_id: int, message_ids: Collection[int]
             ) -> list[StoredMessage]:
    """Those of ``message_ids`` that are the account's messages (a host compares the
    count: a message of another account is not found)."""
    return store.get_messages(session, account_id, message_ids)


def read_original(session: Session, message_id: int) -> bytes:
    """The stored message exactly as it was fetched (or sent), for a download."""
    return store.read_raw(session, message_id)


def open_message(session: Session, message: StoredMessage) -> ReadableMessage:
    """The message made readable; opening it marks it read (commits when it was unread)."""
    readable = read_message(session, message.id)
    if not message.is_read:
        store.mark_read(session, message.id)
    return readable


def mark(session: Session, account_id: int, message_ids: Collection[int], *, read: bool
         ) -> int:
    """Mark the account's messages read (or unread again); returns how many; commits."""
    n = store.set_read(session, account_id, message_ids, read)
    session.commit()
    return n


def move(session: Session, account_id: int, message_ids: Collection[int], folder_id: int
         ) -> int:
    """File the account's messages in another of its folders; returns how many; commits.

    LookupError: the folder is not the account's (nothing moves).
    """
    n = store.move_messages(session, account_id, message_ids, folder_id)
    session.commit()
    return n


def in_trash(session: Session, account_id: int, message_ids: Collection[int]
             ) -> list[StoredMessage]:
    """Those of the messages that are in the account's Trash (deleting them is for good:
    a page asks first)."""
    trash = store.folder_id_for(session, account_id, FolderRole.TRASH)
    return [m for m in store.get_messages(session, account_id, message_ids)
            if m.folder_id == trash]


def delete_messages(app: Flask, session: Session, account: Account,
                    message_ids: Collection[int]) -> Deleted:
    """Delete the account's messages: into Trash, or, those already in Trash, for good.

    Mail in Trash still counts against the quota (the account's counters keep it) until
    it is deleted for good; then the bytes go, the counters drop, and the owner's
    accounts paused for a full quota are resumed if there is room. Commits.
    """
    trash = store.folder_id_for(session, account.id, FolderRole.TRASH)
    messages = store.get_messages(session, account.id, message_ids)
    gone = [m.id for m in messages if m.folder_id == trash]
    out = Deleted()
    out.trashed = store.move_messages(session, account.id,
                                      [m.id for m in messages if m.folder_id != trash], trash)
    out.deleted, out.bytes_freed = store.delete_messages(session, account.id, gone)
    session.commit()
    if out.deleted:
        resume_if_room(app, session, account.owner_id)
    return out


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
