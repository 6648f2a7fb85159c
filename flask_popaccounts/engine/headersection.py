"""The header section of a message, read in bounded memory (pure).

:func:`read_header_section` reads a spooled message up to its blank line, however long
its header section is: fields are kept whole within :data:`HEADER_LIMIT` bytes and,
past that, only the fields anything here uses (:data:`USED_FIELDS`, each bounded), so
a Subject after 400 KB of trace fields is still found. The message itself is never
changed; :attr:`HeaderSection.body_offset` says where its body starts.
"""

from __future__ import annotations

import io
import re
from typing import IO

HEADER_LIMIT = 256 * 1024  #: the header section is kept whole up to this many bytes
LATE_FIELD_LIMIT = 8 * 1024  #: raw bytes kept of one used field found past HEADER_LIMIT
LATE_FIELDS_LIMIT = 64 * 1024  #: raw bytes kept of all used fields past HEADER_LIMIT
_READ_CHUNK = 64 * 1024

#: The fields read from past :data:`HEADER_LIMIT` (what metadata, filters, vacation
#: replies and the body's decoding use), and every ``List-*`` field.
USED_FIELDS = frozenset({
    "date", "received", "from", "sender", "reply-to", "to", "cc", "subject", "message-id",
    "in-reply-to", "references", "return-path", "auto-submitted", "precedence",
    "mime-version", "content-type", "content-transfer-encoding"})


class HeaderSection(bytes):
    """The header section as read (bytes), and where the body starts in the message.

    Usually the exact bytes up to and including the blank line, so ``body_offset`` is
    their length; for a header section longer than the limit it is shorter (see
    :func:`read_header_section`).
    """

    body_offset: int

    def __new__(cls, data: bytes, body_offset: int) -> HeaderSection:
        obj = super().__new__(cls, data)
        obj.body_offset = body_offset
        return obj


def _used(name: bytes) -> bool:
    key = name.strip(b" \t").lower().decode("latin-1")
    return key in USED_FIELDS or key.startswith("list-")


class _Reader:
    """Keeps the header section's fields: all of them up to the limit, then used ones."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept = bytearray()
        self.late = -1  # bytes kept past the limit; -1: still within it
        self.field = bytearray()  # the current field (bounded)
        self.cut = False  # the current field was longer than its buffer

    def add(self, chunk: bytes) -> None:
        room = max(self.limit, LATE_FIELD_LIMIT) + 1 - len(self.field)
        if len(chunk) > room:
            chunk, self.cut = chunk[:max(room, 0)], True
        self.field += chunk

    def end_field(self) -> None:
        field = bytes(self.field)
        self.field.clear()
        cut, self.cut = self.cut, False
        if not field:
            return
        if self.late < 0 and not cut and len(self.kept) + len(field) <= self.limit:
            self.kept += field
            return
        self.late = max(self.late, 0)  # from here on, only the used fields
        if not _used(field.split(b":", 1)[0]):
            return
        piece = field[:LATE_FIELD_LIMIT]
        if cut or len(piece) < len(field):
            piece = piece.rstrip(b"\r\n") + b"\r\n"
        if self.late + len(piece) <= LATE_FIELDS_LIMIT:
            self.kept += piece
            self.late += len(piece)


# A blank line: a line end (CRLF, or a bare LF from sloppy servers) right after another.
_BLANK_LINE = re.compile(rb"\n\r?\n")


def _header_end(data: bytes) -> int:
    """The offset just past the blank line that ends the header section, or -1."""
    if data.startswith((b"\r\n", b"\n")):
        return 2 if data.startswith(b"\r\n") else 1
    m = _BLANK_LINE.search(data)
    return m.end() if m else -1


def read_header_section(spool: IO[bytes], limit: int = HEADER_LIMIT) -> HeaderSection:
    """The header section of the message in ``spool``, in bounded memory; rewinds it.

    Read line by line up to and including the first blank line (CRLF or bare LF line
    ends; everything when there is none). Fields are kept whole while the section stays
    within ``limit`` bytes; past that, only the :data:`USED_FIELDS` are kept (each cut to
    :data:`LATE_FIELD_LIMIT` bytes, :data:`LATE_FIELDS_LIMIT` in all), so a Subject or
    Message-ID after several hundred KB of other fields is still found. The message
    itself (the spool) is never changed; ``body_offset`` says where its body starts.
    """
    spool.seek(0)
    first = spool.read(min(_READ_CHUNK, limit))
    end = _header_end(first)
    if end >= 0:  # the common case: the whole section in the first read
        spool.seek(0)
        return HeaderSection(first[:end], end)
    spool.seek(0)
    reader = _Reader(limit)
    offset = 0
    line_start = True
    while True:
        chunk = spool.readline(_READ_CHUNK)
        if not chunk:
            break
        offset += len(chunk)
        if line_start and chunk in (b"\r\n", b"\n"):
            reader.end_field()
            reader.kept += chunk
            break
        if line_start and chunk[:1] not in (b" ", b"\t"):
            reader.end_field()  # a new field starts
        reader.add(chunk)
        line_start = chunk.endswith(b"\n")
    reader.end_field()
    spool.seek(0)
    return HeaderSection(bytes(reader.kept), offset)


def header_section(raw: bytes, limit: int = HEADER_LIMIT) -> HeaderSection:
    """:func:`read_header_section` for a whole message held in memory."""
    return read_header_section(io.BytesIO(raw), limit)
