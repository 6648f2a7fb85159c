"""One message as filter conditions see it: decoded headers and bounded body text (pure).

Inputs are bounded so that no message can make a rule slow: header fields are cut to
:data:`~.parse.FIELD_LIMIT` characters, body text to :data:`BODY_LIMIT`, and at most
:data:`BODY_READ_LIMIT` raw bytes after the header section are read to find it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .mimeparts import walk
from .parse import SINGLE_FIELDS, all_headers

BODY_LIMIT = 64 * 1024  #: characters of body text a condition looks at
BODY_READ_LIMIT = 512 * 1024  #: raw bytes after the header section read to find them

_TAG = re.compile(r"<[^>]{0,2000}>")


class MailView:
    """The parts of one message that conditions look at, computed lazily.

    ``header_bytes``: the header section; ``body_source()``: returns the raw bytes
    after it (bounded by the caller), only called when a rule looks at the body.
    """

    def __init__(self, header_bytes: bytes, size: int,
                 body_source: Callable[[], bytes] | None = None) -> None:
        self.header_bytes = header_bytes
        self.size = size
        self._body_source = body_source
        self._headers: dict[str, list[str]] | None = None
        self._body: str | None = None

    @property
    def headers(self) -> dict[str, list[str]]:
        """Every header field, by lower-case name, decoded (RFC 2047), in order."""
        if self._headers is None:
            self._headers = all_headers(self.header_bytes)
        return self._headers

    def header(self, name: str) -> str:
        """One header field (any case) as a reader sees it; "" when absent.

        A field a message has at most once (Subject, From, Date...: ``SINGLE_FIELDS``)
        is its first occurrence, as the mailbox and the message page show it; any other
        field is every value joined with ", ".
        """
        values = self.headers.get(name.lower(), [])
        if name.lower() in SINGLE_FIELDS:
            return values[0] if values else ""
        return ", ".join(values)

    def body(self) -> str:
        """The message's text (see :func:`body_text`), read on first use."""
        if self._body is None:
            raw = self._body_source() if self._body_source is not None else b""
            self._body = body_text(self.header_bytes, raw)
        return self._body


def body_text(header_bytes: bytes, body: bytes, limit: int = BODY_LIMIT) -> str:
    """The text of a message's text parts (plain preferred, HTML tags dropped), bounded."""
    try:
        raw = header_bytes + body
        texts: list[str] = []
        total = 0
        for leaf in walk(raw).leaves:  # no recursion, bounded depth (mimeparts)
            if leaf.opaque:
                continue
            part = leaf.message(raw)
            if part.get_content_maintype() != "text":
                continue
            if part.get_content_disposition() == "attachment":
                continue
            try:
                content = part.get_content()  # type: ignore[attr-defined]
            except Exception:
                payload = part.get_payload(decode=True)
                content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) \
                    else str(payload)
            if part.get_content_subtype() == "html":
                content = _TAG.sub(" ", str(content))
            texts.append(str(content))
            total += len(texts[-1])
            if total >= limit:
                break
        return "\n".join(texts)[:limit]
    except Exception:
        return body[:limit].decode("utf-8", "replace")
