"""A message's MIME structure, walked without recursion and with bounds (pure).

The ``email`` package parses multiparts recursively (and ``Message.walk`` recurses
again), so a message nested a thousand levels deep raises ``RecursionError`` in the
parser itself. Here the tree is split by its boundaries with an explicit stack, and each
part's own header section is parsed alone (``headersonly``: never the nested body):

- at most :data:`MAX_DEPTH` multipart levels are opened; a multipart below that (and
  any attached ``message/*``) is one opaque part, offered whole as a ``.eml`` file;
- at most :data:`MAX_PARTS` parts are listed; what follows is counted in
  :attr:`MimeTree.omitted` (the original message stays downloadable whole);
- each part is a byte range of the original (nothing is copied until it is read).

Part ids are dotted positions as in IMAP (``"1"``, ``"1.2"``; the body of a message
that is not multipart is ``"1"``).
"""

from __future__ import annotations

import email.policy
import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser

MAX_DEPTH = 32  #: multipart levels opened; deeper content is one attachment
MAX_PARTS = 500  #: parts listed at most

_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_PARSER = BytesParser(policy=email.policy.default)


@dataclass
class MimePart:
    """One entity: its id, its byte ranges in the raw message, its parsed headers."""

    part_id: str
    start: int  #: where its header section starts
    body_start: int  #: where its body starts
    end: int  #: where it ends (exclusive)
    depth: int
    headers: Message
    opaque: bool = False  #: a container not opened (too deep, or message/*)

    @property
    def content_type(self) -> str:
        return self.headers.get_content_type()

    def entity(self, raw: bytes) -> bytes:
        """The part as written: its header section and body (a valid MIME entity)."""
        return raw[self.start:self.end]

    def message(self, raw: bytes) -> Message:
        """The part as an ``email`` message whose body is not parsed further (flat)."""
        return _PARSER.parsebytes(self.entity(raw), headersonly=True)


@dataclass
class MimeTree:
    leaves: list[MimePart] = field(default_factory=list)  #: in reading order
    omitted: int = 0  #: parts beyond MAX_PARTS, not listed
    too_deep: bool = False  #: some content sat below MAX_DEPTH


def _header_end(raw: bytes, start: int, end: int) -> int:
    """Where the body of the entity at ``start`` begins (``end`` when it has none)."""
    if raw.startswith(b"\r\n", start):  # no header fields at all
        return start + 2
    if raw.startswith(b"\n", start):
        return start + 1
    m = _BLANK_LINE.search(raw, start, end)
    return m.end() if m else end


def _entity(raw: bytes, part_id: str, start: int, end: int, depth: int) -> MimePart:
    body_start = _header_end(raw, start, end)
    headers = _PARSER.parsebytes(raw[start:body_start], headersonly=True)
    return MimePart(part_id, start, body_start, end, depth, headers)


def _children(raw: bytes, part: MimePart, boundary: str) -> list[tuple[int, int]]:
    """The byte ranges of a multipart's children (RFC 2046 5.1.1 delimiters).

    The line end before a delimiter belongs to it; the preamble and the epilogue are not
    parts; a missing close delimiter ends the last part at the end of the container.
    """
    delimiter = re.compile(rb"(?:\r?\n|^)--" + re.escape(boundary.encode("ascii", "replace"))
                           + rb"(--)?[ \t]*(?:\r?\n|$)", re.MULTILINE)
    ranges: list[tuple[int, int]] = []
    pos, begin = part.body_start, -1
    while True:
        m = delimiter.search(raw, pos, part.end)
        if m is None:
            if begin >= 0:
                ranges.append((begin, part.end))
            return ranges
        if begin >= 0:
            ranges.append((begin, m.start()))
        if m.group(1):  # the close delimiter
            return ranges
        begin = pos = m.end()
        if pos >= part.end:
            return ranges


def walk(raw: bytes, max_depth: int = MAX_DEPTH, max_parts: int = MAX_PARTS) -> MimeTree:
    """The leaf parts of ``raw`` in reading order, bounded; never raises on bad mail."""
    tree = MimeTree()
    stack = [_entity(raw, "", 0, len(raw), 0)]
    while stack:
        part = stack.pop()
        if len(tree.leaves) >= max_parts:
            tree.omitted += 1
            continue
        maintype = part.headers.get_content_maintype()
        boundary = part.headers.get_boundary() if maintype == "multipart" else None
        if maintype == "message" and part.part_id:
            part.opaque = True  # an attached message: offered whole, never parsed here
        elif boundary and part.depth >= max_depth:
            part.opaque = True
            tree.too_deep = True
        elif boundary:
            prefix = f"{part.part_id}." if part.part_id else ""
            kids = [_entity(raw, f"{prefix}{i}", s, e, part.depth + 1)
                    for i, (s, e) in enumerate(_children(raw, part, boundary), 1)]
            stack.extend(reversed(kids))
            continue
        if not part.part_id:
            part.part_id = "1"  # a single-part message's body is part 1 (as in IMAP)
        tree.leaves.append(part)
    return tree


def headers_of(raw: bytes) -> Message:
    """The message's own header fields (its body is not parsed)."""
    return _entity(raw, "", 0, len(raw), 0).headers


def find(raw: bytes, part_id: str) -> MimePart | None:
    """The listed part with this id (as :func:`walk` lists it), or None."""
    return next((p for p in walk(raw).leaves if p.part_id == part_id), None)
