"""Addresses bound for an envelope or a header, parsed strictly (pure).

What reaches ``MAIL FROM``/``RCPT TO`` and the headers we write must be unambiguous, so
the syntax accepted is stricter than RFC 5322: a dot-atom local part (no quoted strings,
no comments), an ASCII DNS domain of at least two labels, no groups, nothing the
``email`` parser reports a defect for. Control characters, as written or hidden in an
RFC 2047 encoded word, are refused by :mod:`.safety` before anything is parsed.
"""

from __future__ import annotations

import re
from email import policy
from email.headerregistry import Address

from .errors import InvalidAddress
from .safety import check_address_parts, check_header_fields

#: RFC 5322 ``atext``: the characters of a dot-atom's atoms.
ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"^{ATEXT}(?:\.{ATEXT})*$")
_DOMAIN = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
                     r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def check_addr_spec(addr: str) -> str:
    """``local@domain``, ASCII, strict; returns it with the domain lower-cased."""
    check_header_fields(address=addr)
    local, sep, domain = addr.rpartition("@")
    if (not sep or len(addr) > 254 or len(local) > 64 or not _LOCAL.match(local)
            or not _DOMAIN.match(domain)):
        raise InvalidAddress(detail=addr[:80])
    return f"{local}@{domain.lower()}"


def parse_addresses(value: str, *, field: str = "address", single: bool = False
                    ) -> list[Address]:
    """Parse a header-style address list strictly (``"Ann" <ann@example.com>, bob@x.org``).

    Anything the ``email`` parser reports a defect for, groups, and addr-specs that are
    not plain ``local@domain`` are refused with :class:`InvalidAddress`; CR/LF and
    control characters, also once encoded words are decoded, with
    :class:`~.errors.HeaderInjection`.
    """
    check_header_fields(**{field: value})
    value = value.strip()
    if not value:
        return []
    try:
        header = policy.default.header_factory("to", value)
    except ValueError:  # the email package's own refusals (e.g. CR/LF in a part)
        raise InvalidAddress(detail=f"{field}: {value[:80]}") from None
    if header.defects or any(g.display_name is not None for g in header.groups):
        raise InvalidAddress(detail=f"{field}: {value[:80]}")
    # The parser decodes words our check may not see as words (inside quoted strings,
    # for one): check the display names as they will be written, too.
    check_address_parts(field, header.addresses)
    out = [Address(display_name=a.display_name, addr_spec=check_addr_spec(a.addr_spec))
           for a in header.addresses]
    if not out or (single and len(out) != 1):
        raise InvalidAddress(detail=f"{field}: {value[:80]}")
    return out


def parse_address(value: str, *, field: str = "address") -> Address:
    """Exactly one address, strictly parsed (see :func:`parse_addresses`)."""
    return parse_addresses(value, field=field, single=True)[0]
