"""Message metadata from the header section, robustly: this never raises.

Real mail is messy: broken encoded-words, raw 8-bit UTF-8 (or worse) in headers,
dates in a dozen wrong formats. A malformed message is still stored raw and fetched
once, so parsing degrades field by field and records what went wrong in ``defects``.
"""

from __future__ import annotations

import email.header
import email.policy
import email.utils
import re
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesHeaderParser
from typing import IO

from .types import MessageMeta

HEADER_LIMIT = 256 * 1024  #: at most this much of a message is read as its header section
FIELD_LIMIT = 2000  #: decoded fields are cut to this many characters

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_CTRL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def read_header_section(spool: IO[bytes], limit: int = HEADER_LIMIT) -> bytes:
    """The bytes up to and including the first blank line (bounded); leaves the spool at 0."""
    spool.seek(0)
    data = b""
    while len(data) < limit:
        chunk = spool.read(min(64 * 1024, limit - len(data)))
        if not chunk:
            break
        start = max(0, len(data) - 3)
        data += chunk
        for sep in (b"\r\n\r\n", b"\n\n"):
            i = data.find(sep, start)
            if i >= 0:
                spool.seek(0)
                return data[: i + len(sep)]
    spool.seek(0)
    return data


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _undo_surrogates(text: str) -> str:
    """Raw 8-bit header bytes arrive as surrogate escapes; decode them as UTF-8."""
    if not _has_surrogates(text):
        return text
    raw = text.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def _clean(text: str) -> str:
    text = _CTRL.sub(" ", text)
    text = " ".join(text.split())
    return text[:FIELD_LIMIT]


def _decode_words_leniently(value: str, defects: list[str]) -> str:
    """Decode RFC 2047 words one by one; a broken word stays as it was written."""
    out: list[str] = []
    last = 0
    prev_was_word = False
    for m in _ENCODED_WORD.finditer(value):
        between = value[last : m.start()]
        if not (prev_was_word and between.strip() == ""):
            out.append(between)  # whitespace between adjacent encoded words is dropped
        try:
            parts = email.header.decode_header(m.group(0))
            piece = "".join(
                p.decode(cs or "utf-8", "replace") if isinstance(p, bytes) else p for p, cs in parts
            )
            out.append(piece)
            prev_was_word = True
        except Exception as exc:  # LookupError (charset), binascii errors, ...
            defects.append(f"encoded-word: {type(exc).__name__}")
            out.append(m.group(0))
            prev_was_word = False
        last = m.end()
    out.append(value[last:])
    return "".join(out)


def _field(modern: Message | None, legacy: Message, name: str, defects: list[str]) -> str:
    """One header decoded: policy.default first, then a lenient word-by-word fallback.

    Raw 8-bit headers go straight to the fallback: policy.default turns their bytes
    into U+FFFD, while we can still try UTF-8 and then cp1252 on the original bytes.
    """
    raw_values = _raw_values(legacy, name)
    eight_bit = any(_has_surrogates(v) for v in raw_values)
    if modern is not None and not eight_bit:
        try:
            values = modern.get_all(name) or []
            if values:
                text = ", ".join(str(v) for v in values)
                if not _ENCODED_WORD.search(text):
                    return _clean(text)
                defects.append(f"{name}: undecoded encoded-word")
        except Exception as exc:
            defects.append(f"{name}: {type(exc).__name__}")
    decoded = [_decode_words_leniently(_undo_surrogates(v), defects) for v in raw_values]
    return _clean(", ".join(decoded))


def _raw_values(legacy: Message, name: str) -> list[str]:
    """Header values as stored (``raw_items`` skips compat32's 8-bit sanitising)."""
    key = name.lower()
    return [str(v) for k, v in legacy.raw_items() if k.lower() == key]


def _to_utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _parse_date(text: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        return _to_utc(email.utils.parsedate_to_datetime(text))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def parse_meta(header_bytes: bytes, size: int, fetched_at: datetime) -> MessageMeta:
    """Metadata of one message from its header section. Never raises."""
    defects: list[str] = []
    fetched = _to_utc(fetched_at)
    modern: Message | None
    try:
        modern = BytesHeaderParser(policy=email.policy.default).parsebytes(header_bytes)
        defects.extend(type(d).__name__ for d in modern.defects)
    except Exception as exc:
        defects.append(f"parse: {type(exc).__name__}")
        modern = None
    try:
        legacy = BytesHeaderParser(policy=email.policy.compat32).parsebytes(header_bytes)
    except Exception as exc:  # pragma: no cover - compat32 header parsing is total
        defects.append(f"parse: {type(exc).__name__}")
        legacy = Message()

    def raw(name: str) -> list[str]:
        return [_undo_surrogates(v) for v in _raw_values(legacy, name)]

    sent_at: datetime | None = None
    source = "fetched"
    dates = raw("Date")
    if dates:
        sent_at = _parse_date(dates[0])
        if sent_at is None:
            defects.append("Date: unparseable")
        else:
            source = "date"
    if sent_at is None:
        received = raw("Received")
        if received:  # the topmost one was added last: closest to delivery
            top = received[0]
            if ";" in top:
                sent_at = _parse_date(top.rsplit(";", 1)[1])
            if sent_at is None:
                defects.append("Received: no date")
            else:
                source = "received"
    if sent_at is None:
        sent_at = fetched

    to = _field(modern, legacy, "To", defects)
    cc = _field(modern, legacy, "Cc", defects)
    message_ids = raw("Message-ID")
    return MessageMeta(
        sent_at=sent_at,
        sent_at_source=source,
        from_addr=_field(modern, legacy, "From", defects),
        to_addrs=", ".join(x for x in (to, cc) if x),
        subject=_field(modern, legacy, "Subject", defects),
        message_id=_clean(message_ids[0]) if message_ids else "",
        size=size,
        defects=defects,
    )
