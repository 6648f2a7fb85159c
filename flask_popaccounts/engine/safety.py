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

- :data:`CONTROL_CHARS` / :func:`has_control_chars`: the character class and the test;
- :func:`check_fields`: user input bound for a protocol line (host, username, password,
  a command): :class:`~.errors.InvalidInput`;
- :func:`check_header_fields`: values bound for a header we write (addresses, subject,
  In-Reply-To...), decoded first: :class:`~.errors.HeaderInjection`;
- :func:`check_address_parts`: the display names and addr-specs of ``Address`` objects
  bound for a header, the same way;
- :func:`clean_header_text`: text copied from received mail into a header we write,
  made safe (decoded, control characters replaced) instead of refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.header import decode_header
from email.headerregistry import Address

from .errors import HeaderInjection, InvalidInput
from .texts import N_

#: Every character refused in a protocol line or a header value.
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

# As lenient as the decoders that will read the header: the ``email`` package decodes
# ``=?utf-8?q?x =0D=0A?=`` (a space inside the word) to "x \r\n", so a stricter pattern
# here would let that word through undecoded and unchecked.
_ENCODED_WORD = re.compile(r"=\?[^?]*\?[bBqQ]\?.*?\?=", re.DOTALL)


def has_control_chars(value: str) -> bool:
    """True when ``value`` holds CR, LF, NUL or any other control/separator character."""
    return CONTROL_CHARS.search(value) is not None


def _decode_word(word: str) -> str:
    try:
        ((data, charset),) = decode_header(word)
    except Exception:  # a malformed word decodes to nothing anyone could read
        return word
    if isinstance(data, str):
        return data
    try:
        return data.decode(charset or "ascii", "replace")
    except LookupError:  # an unknown charset: every byte still shows
        return data.decode("latin-1")


def decode_encoded_words(value: str) -> str:
    """``value`` with its RFC 2047 encoded words decoded (leniently: never raises).

    Word by word, so that one malformed word cannot hide what the others decode to.
    """
    if "=?" not in value:
        return value
    return _ENCODED_WORD.sub(lambda m: _decode_word(m.group(0)), value)


def header_value_is_safe(value: str) -> bool:
    """No control character in ``value``, as written nor once decoded, nor twice.

    Twice: the ``email`` package decodes the words of a value it is given and writes
    what they decode to, so ``=?utf-8?b?PT91dGYtOD9xP0hp...?=`` (an encoded word that
    decodes to ``=?utf-8?q?Hi=0D=0A...?=``) would leave as the second word, and the
    reader decodes that one to CR/LF. Decoding stops as soon as nothing changes.
    """
    for _ in range(3):
        if has_control_chars(value):
            return False
        decoded = decode_encoded_words(value)
        if decoded == value:
            return True
        value = decoded
    return not has_control_chars(value)


def clean_header_text(value: str) -> str:
    """Text copied from received mail into a header we write (a forward's "Fwd: ..."
    subject, a reply's "Re: ..." and In-Reply-To), made safe rather than refused.

    Nobody typed it here, so refusing it would only drop the forward or the reply:
    encoded words are decoded (again, while decoding reveals more of them) and control
    characters become spaces; whatever still hides one loses its ``=?`` (no longer an
    encoded word). The result always passes :func:`header_value_is_safe`.
    """
    for _ in range(4):
        if header_value_is_safe(value):
            return value
        value = CONTROL_CHARS.sub(" ", decode_encoded_words(value))
    return value if header_value_is_safe(value) else value.replace("=?", "= ?")


def check_fields(**fields: str | None) -> None:
    """Raise :class:`InvalidInput` when a named protocol-line value holds a control char."""
    for name, value in fields.items():
        if value and has_control_chars(value):
            raise InvalidInput(detail=f"{name} contains control characters")


#: the header a value is bound for, as a form or a page names it (``HeaderInjection.field``;
#: msgids: a page shows ``_(err.field)``)
FIELD_LABELS = {
    "subject": N_("Subject"), "to": N_("To"), "cc": N_("Cc"), "bcc": N_("Bcc"),
    "reply_to": N_("Reply-To"), "from": N_("From (the account's name or address)"),
    "sender": N_("Sender"), "in_reply_to": N_("In-Reply-To"), "references": N_("References"),
    "message_id": N_("Message-ID"),
}


def check_header_fields(**fields: str | None) -> None:
    """Raise :class:`HeaderInjection` when a named header value holds a control char,
    as written or after decoding its RFC 2047 encoded words.

    The error's ``field`` names the header (:data:`FIELD_LABELS`; ``"to name"``, the
    display name of a To address, is "To"), so a form can say which field to correct.
    """
    for name, value in fields.items():
        if value and not header_value_is_safe(value):
            label = FIELD_LABELS.get(name.split(" ", 1)[0], name)
            err = HeaderInjection(detail=f"{name} contains control characters")
            err.field = label
            raise err


def check_address_parts(field: str, addresses: Iterable[Address]) -> None:
    """:func:`check_header_fields` for every display name and addr-spec in ``addresses``.

    Callers build ``Address`` objects from stored data too (an account's name), so the
    parts are checked where they are written, not only where user text is parsed.
    """
    for address in addresses:
        check_header_fields(**{f"{field} name": address.display_name,
                               field: address.addr_spec})
