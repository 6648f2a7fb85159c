"""One rule for what may reach a protocol line or a mail header, checked in one place.

A value that becomes part of a POP3 or SMTP command, or of a header field of a message
we write, must not hold a line break or any other control character: CR and LF would
end the line and start a command or a header of the sender's choosing (injection), and
the rest have no business in either. The same character class is used everywhere:
C0 controls (tab included), DEL, C1 controls (NEL among them) and the Unicode line and
paragraph separators.

Header values are checked *after decoding*: an RFC 2047 encoded word such as
``=?utf-8?q?hi=0D=0ABcc:_x@example.com?=`` is harmless-looking ASCII, but a mail
client (or the ``email`` package's header registry) decodes it to CR/LF.

- :func:`has_control_chars`: the test itself;
- :func:`check_fields`: user input bound for a protocol line (host, username, password,
  a command): :class:`~.errors.InvalidInput`;
- :func:`check_header_fields`: values bound for a header we write (addresses, subject,
  In-Reply-To...), decoded first: :class:`~.errors.HeaderInjection`.
"""

from __future__ import annotations

import re
from email.header import decode_header

from .errors import HeaderInjection, InvalidInput

#: Every character refused in a protocol line or a header value.
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def has_control_chars(value: str) -> bool:
    """True when ``value`` holds CR, LF, NUL or any other control/separator character."""
    return CONTROL_CHARS.search(value) is not None


def decode_encoded_words(value: str) -> str:
    """``value`` with its RFC 2047 encoded words decoded (leniently: never raises)."""
    if _ENCODED_WORD.search(value) is None:
        return value
    try:
        parts = decode_header(value)
    except Exception:  # a malformed word: what it would decode to is unknowable
        return value
    out: list[str] = []
    for part, charset in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        try:
            out.append(part.decode(charset or "ascii", "replace"))
        except LookupError:  # an unknown charset: every byte still shows
            out.append(part.decode("latin-1"))
    return "".join(out)


def header_value_is_safe(value: str) -> bool:
    """No control character in ``value``, neither as written nor once decoded."""
    return not (has_control_chars(value) or has_control_chars(decode_encoded_words(value)))


def check_fields(**fields: str | None) -> None:
    """Raise :class:`InvalidInput` when a named protocol-line value holds a control char."""
    for name, value in fields.items():
        if value and has_control_chars(value):
            raise InvalidInput(detail=f"{name} contains control characters")


def check_header_fields(**fields: str | None) -> None:
    """Raise :class:`HeaderInjection` when a named header value holds a control char,
    as written or after decoding its RFC 2047 encoded words."""
    for name, value in fields.items():
        if value and not header_value_is_safe(value):
            raise HeaderInjection(detail=f"{name} contains control characters")
