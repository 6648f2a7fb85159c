"""Message metadata from the header section, robustly: this never raises.

Real mail is messy: broken encoded-words, raw 8-bit UTF-8 (or worse) in headers,
dates in a dozen wrong formats. A malformed message is still stored raw and fetched
once, so parsing degrades field by field and records what went wrong in ``defects``.
"""

from __future__ import annotations

import email.header
import email.headerregistry
import email.policy
import email.utils
import re
from collections.abc import Collection
from datetime import UTC, datetime

from .addresses import ATEXT
from .headersection import HEADER_LIMIT, HeaderSection, header_section, read_header_section
from .safety import CONTROL_CHARS, has_control_chars
from .types import MessageMeta

__all__ = ["HEADER_LIMIT", "HeaderSection", "all_headers", "display_text", "header_section",
           "parse_meta", "read_header_section", "split_headers"]

FIELD_LIMIT = 2000  #: decoded fields are cut to this many characters

#: Fields a message has at most once (RFC 5322 3.6); a second occurrence is ignored
#: (the first Subject is the subject, not "First, Second").
SINGLE_FIELDS = frozenset({"date", "from", "sender", "reply-to", "subject", "message-id",
                           "in-reply-to", "references"})

#: Bidirectional formatting characters (UAX #9): the embeddings and overrides U+202A-E,
#: the isolates U+2066-9 and the marks U+200E, U+200F and U+061C. In text from a sender
#: they reorder what is shown ("\u202egnp.exe" displays as "exe.png"), so display text
#: drops them (the page isolates each untrusted field with <bdi> for direction instead).
BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_SURROGATE = re.compile("[\udc80-\udcff]")


def _has_surrogates(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def _undo_surrogates(text: str) -> str:
    """Raw 8-bit header bytes arrive as surrogate escapes; decode them as UTF-8."""
    if not _has_surrogates(text):
        return text
    raw = text.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def display_text(text: str, limit: int = FIELD_LIMIT) -> str:
    """Untrusted text (a subject, a sender, a file or account name) as one line to show.

    The one display rule, used for what is stored and again wherever it is shown:
    control characters become spaces, bidirectional formatting characters
    (:data:`BIDI_CONTROLS`) are removed, whitespace runs become one space, the ends are
    trimmed, and the result is cut to ``limit`` characters.
    """
    # Printable means no control, format (bidi included) or separator character but the
    # ASCII space: already clean unless spaces need collapsing.
    if text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
        return text[:limit]
    text = BIDI_CONTROLS.sub("", CONTROL_CHARS.sub(" ", text))  # cleaned, not refused
    return " ".join(text.split())[:limit]


_clean = display_text


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


_WANTED = frozenset({"date", "received", "from", "to", "cc", "subject", "message-id"})


def split_headers(header_bytes: bytes, defects: list[str],
                  names: Collection[str] | None = _WANTED) -> dict[str, list[str]]:
    """Header fields by lower-case name, unfolded, in order of appearance; never raises.

    Only the fields in ``names`` (by default those :func:`parse_meta` uses; ``None``:
    every field). A few lines instead of :mod:`email.parser`: the header section is only
    split into fields here (the expensive part of the email package, its header
    registry, is used below only for values that need RFC 2047 decoding). 8-bit bytes
    are kept as surrogate escapes so they can be decoded from the original bytes later.
    """
    text = header_bytes.decode("ascii", "surrogateescape")
    fields: dict[str, list[str]] = {}
    current: list[str] | None = None
    # Lines end in CRLF, or a bare LF from sloppy servers (a lone CR is no line end).
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line:
            break  # the blank line that ends the header section
        if line[0] in " \t":
            if current is not None:
                current[-1] += line  # unfolding: drop only the line break
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")  # "Subject :" is obsolete but legal (RFC 5322 4.5)
        if not colon or not name or " " in name or "\t" in name:
            if not line.startswith("From "):  # an mbox separator is not a defect
                defects.append("malformed header line")
            current = None
            continue
        key = name.lower()
        if names is None or key in names:
            current = fields.setdefault(key, [])
            current.append(value.lstrip())
        else:
            current = None
    return fields


def all_headers(header_bytes: bytes) -> dict[str, list[str]]:
    """Every field of a header section, unfolded, decoded (RFC 2047), one line each.

    What filters and the vacation rules look at: whitespace runs become one space and
    each value is cut to :data:`FIELD_LIMIT` characters. Never raises.
    """
    defects: list[str] = []  # nobody reads them here: filters see what a reader sees
    fields = split_headers(header_bytes, defects, names=None)
    return {key: [_one_line(key, v, defects) for v in values] for key, values in fields.items()}


def _one_line(name: str, value: str, defects: list[str]) -> str:
    try:
        text = _decode_value(name, value, defects)
    except Exception:  # decoding is lenient already; a value is never lost to it
        text = _undo_surrogates(value)
    return " ".join(BIDI_CONTROLS.sub("", text).split())[:FIELD_LIMIT]


#: One mailbox whose display name is only encoded-words: ``=?..?= <local@domain>``.
_ENCODED_MAILBOX = re.compile(
    r"(?P<name>=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=(?:[ \t]+=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)*)"
    rf"[ \t]*<(?P<local>{ATEXT}(?:\.{ATEXT})*)@(?P<domain>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>"
)
_ADDRESS_FIELDS = frozenset({"from", "to", "cc"})


def _decode_words_strictly(value: str) -> str | None:
    """Well-formed encoded-words (each between whitespace or the ends) decoded; else None.

    The fast path of :func:`_decode_value`: the result is what policy.default gives for
    such values, at a fraction of the cost; anything unusual returns None.
    """
    out: list[str] = []
    last = 0
    for m in _ENCODED_WORD.finditer(value):
        start, end = m.span()
        if (start and not value[start - 1].isspace()) or (
                end < len(value) and not value[end].isspace()):
            return None
        between = value[last:start]
        if "=?" in between:
            return None
        if not (out and last and between.isspace()):
            out.append(between)  # whitespace between adjacent encoded words is dropped
        try:
            ((data, charset),) = email.header.decode_header(m.group(0))
            if not isinstance(data, bytes) or not charset:
                return None
            out.append(data.decode(charset))
        except Exception:  # LookupError, HeaderParseError, UnicodeDecodeError, ...
            return None
        last = end
    if not out or "=?" in value[last:]:
        return None
    out.append(value[last:])
    text = "".join(out)
    return None if _ENCODED_WORD.search(text) or has_control_chars(text) else text


def _decode_fast(name: str, value: str) -> str | None:
    """The common RFC 2047 shapes decoded cheaply (None: use the full parser)."""
    if name.lower() not in _ADDRESS_FIELDS:
        return _decode_words_strictly(value)
    m = _ENCODED_MAILBOX.fullmatch(value.strip())
    if m is None:
        return None
    display = _decode_words_strictly(m["name"])
    if not display or display != display.strip():
        return None
    return str(email.headerregistry.Address(display, m["local"], m["domain"]))


def _decode_value(name: str, value: str, defects: list[str]) -> str:
    """One header value decoded: RFC 2047 via policy.default, leniently when that fails.

    Well-formed encoded-words in an unstructured value, or a single mailbox whose display
    name is encoded, take a fast path with the same result (policy.default's header
    registry costs about 0.4 ms a value). Raw 8-bit values skip policy.default (it turns
    their bytes into U+FFFD); we decode the original bytes (UTF-8, then cp1252) and any
    encoded-words in them.
    """
    if _has_surrogates(value):
        return _decode_words_leniently(_undo_surrogates(value), defects)
    if "=?" not in value:
        return value  # nothing encoded: the common case, no parsing needed
    fast = _decode_fast(name, value)
    if fast is not None:
        return fast
    try:
        header = email.policy.default.header_factory(name, value)
        text = str(header)
        defects.extend(f"{name}: {type(d).__name__}" for d in getattr(header, "defects", ()))
        if not _ENCODED_WORD.search(text):
            return text
        defects.append(f"{name}: undecoded encoded-word")
    except Exception as exc:
        defects.append(f"{name}: {type(exc).__name__}")
    return _decode_words_leniently(value, defects)


def _field(fields: dict[str, list[str]], name: str, defects: list[str]) -> str:
    """One field decoded for display: the first occurrence of a :data:`SINGLE_FIELDS`
    field (a second Subject is a defect, not part of the subject), else all, joined."""
    values = fields.get(name.lower(), [])
    if name.lower() in SINGLE_FIELDS and len(values) > 1:
        defects.append(f"{name}: {len(values)} fields, the first is used")
        values = values[:1]
    return _clean(", ".join(_decode_value(name, v, defects) for v in values))


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
    try:
        fields = split_headers(header_bytes, defects)
    except Exception as exc:  # pragma: no cover - split_headers is total by construction
        defects.append(f"parse: {type(exc).__name__}")
        fields = {}

    def raw(name: str) -> list[str]:
        return [_undo_surrogates(v) for v in fields.get(name, [])]

    sent_at: datetime | None = None
    source = "fetched"
    dates = raw("date")
    if dates:
        sent_at = _parse_date(dates[0])
        if sent_at is None:
            defects.append("Date: unparseable")
        else:
            source = "date"
    if sent_at is None:
        received = raw("received")
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

    try:
        to = _field(fields, "To", defects)
        cc = _field(fields, "Cc", defects)
        from_addr = _field(fields, "From", defects)
        subject = _field(fields, "Subject", defects)
    except Exception as exc:  # pragma: no cover - every step above already catches
        defects.append(f"decode: {type(exc).__name__}")
        to = cc = from_addr = subject = ""
    message_ids = raw("message-id")
    return MessageMeta(
        sent_at=sent_at,
        sent_at_source=source,
        from_addr=from_addr,
        to_addrs=", ".join(x for x in (to, cc) if x),
        subject=subject,
        message_id=_clean(message_ids[0]) if message_ids else "",
        size=size,
        defects=defects,
    )
