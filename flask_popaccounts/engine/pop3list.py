"""POP3 listings (UIDL, LIST, STAT): bounded, parsed, and every message keyed.

A listing is read lazily, line by line, and never holds more than the site's cap
(``NetPolicy.max_listing``, config ``POPACCOUNTS_MAX_LISTING``): a mailbox that lists
more is named (:class:`~.errors.ListingTooLarge`, "the server lists 10,000,000
messages, more than this site fetches at once") instead of filling memory. The client
asks STAT first, so the usual case is named before one listing line is read; a server
whose listing outgrows its STAT is stopped at the cap.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .errors import BadServerAnswer, ListingTooLarge
from .pop3wire import Wire

_UIDL_OK = re.compile(rb"[\x21-\x7e]{1,70}")


def hashed_uidl(data: bytes) -> str:
    """The key of a UIDL RFC 1939 does not allow (or of a repeated one): 66 ASCII characters."""
    return "h:" + hashlib.sha256(data).hexdigest()


def check_count(cap: int, count: int, *, exact: bool) -> None:
    """:class:`~.errors.ListingTooLarge` when ``count`` messages exceed ``cap``.

    ``exact``: ``count`` is the server's own figure (STAT); otherwise the listing was
    cut at the cap and the real size is unknown.
    """
    if count > cap:
        what = f"{count:,}" if exact else f"more than {cap:,}"
        raise ListingTooLarge(
            f"the server lists {what} messages, more than this site fetches at once "
            f"(at most {cap:,})", detail=f"{what} listed, limit {cap}")


def stat_answer(line: bytes) -> tuple[int, int]:
    """STAT's ``+OK`` text: (message count, octets)."""
    try:
        count, size = line.split()[:2]
        return int(count), int(size)
    except ValueError:
        raise BadServerAnswer("bad STAT answer", detail=line) from None


def listing_lines(wire: Wire, verb: str, cap: int) -> Iterator[bytes]:
    """The lines of a multi-line answer whose +OK was read, dot-unstuffed, up to ``.``.

    More than ``cap`` lines: :class:`~.errors.ListingTooLarge` (:class:`BadServerAnswer`
    for CAPA). After the final ``.``, nothing else may be waiting (in step).
    """
    count = 0
    while True:
        item = wire.readline()
        if item.startswith(b"."):
            if item == b".":
                wire.check_idle(verb)
                return
            item = item[1:]
        count += 1
        if count > cap:
            if verb == "CAPA":
                raise BadServerAnswer("CAPA answer too long")
            check_count(cap, count, exact=False)
        yield item


@dataclass
class UidlKeys:
    """A UIDL listing keyed: message number -> key, with the anomalies counted."""

    by_num: dict[int, str] = field(default_factory=dict)
    nonconforming: int = 0  #: UIDLs outside RFC 1939 (keyed by their hash)
    duplicates: int = 0  #: messages listing a UIDL an earlier one had

    @classmethod
    def of(cls, lines: Iterable[bytes]) -> UidlKeys:
        """Key every listed message (see :meth:`~.pop3.POP3Client.uidl` for the rule)."""
        keys = cls()
        seen: dict[bytes, int] = {}
        for raw in lines:
            num, _, uid = raw.strip(b" ").partition(b" ")
            uid = uid.strip(b" ")
            if not num.isdigit() or not uid:
                raise BadServerAnswer("bad UIDL line", detail=raw)
            copies = seen[uid] = seen.get(uid, 0) + 1
            if copies > 1:
                keys.duplicates += 1
                keys.by_num[int(num)] = hashed_uidl(b"dup\n%d\n" % copies + uid)
            elif _UIDL_OK.fullmatch(uid):
                keys.by_num[int(num)] = uid.decode("ascii")
            else:
                keys.nonconforming += 1
                keys.by_num[int(num)] = hashed_uidl(uid)
        return keys


def scan_listing(lines: Iterable[bytes]) -> dict[int, int]:
    """LIST's lines: message number -> size in octets."""
    out: dict[int, int] = {}
    for raw in lines:
        parts = raw.split()
        if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
            raise BadServerAnswer("bad LIST line", detail=raw)
        out[int(parts[0])] = int(parts[1])
    return out
