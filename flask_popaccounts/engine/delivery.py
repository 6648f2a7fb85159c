"""Delivering a fetched message somewhere else than the built-in store: the shared types.

The host hooks (``flask_popaccounts.hooks``) and the built-in deliveries
(``storage/deliveries/``: Maildir, LMTP) speak in these terms; the engine's fetch does
not know about them (it talks to a :class:`~.types.Sink`, which the services build over a
delivery).

- :func:`delivery_id`: the stable name of one message of one account, derived from the
  account and the UIDL, so a repeat after a crash is recognisable: the Maildir file
  name, the ``X-PopAccounts-Id`` header an LMTP delivery adds in front of the message
  (:func:`id_header`), the key a host's own store may make unique.
- :class:`DeliveryItem`: what a delivery receives (the spooled bytes exactly as fetched,
  the folder and flags the filters and the scanner decided).
- :class:`ScanResult` / :class:`Verdict`: a scanner's word on a message.
- The delivery errors: :class:`DeliveryUnavailable` (transient: the fetch stops, the
  message stays on the server and is delivered later) and :class:`DeliveryRefused`
  (the platform refused for good: a named error for the account card).

Exception tree (below :class:`~.errors.PopAccountsError`)::

    DeliveryError
     ├── DeliveryUnavailable ......... delivery_unavailable   transient
     │    └── PlatformFull ........... platform_full          transient
     └── DeliveryRefused ............. delivery_refused
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import IO

from .errors import PopAccountsError
from .types import MessageMeta, NetPolicy

#: The header an external delivery puts in front of the message (a read-back finds it).
ID_HEADER = "X-PopAccounts-Id"
#: The folder every delivery has (IMAP's name for it).
INBOX = "INBOX"
#: Where a scanner's "junk" goes.
JUNK = "Junk"
#: Where a filter's "move to Trash" goes.
TRASH = "Trash"


def N_(message: str) -> str:
    """Marks a text for extraction (``pybabel -k N_``); the pages translate it."""
    return message


def delivery_id(account_key: str, uidl: str) -> str:
    """The stable id of message ``uidl`` of the account ``account_key`` (32 hex digits).

    ``account_key`` names the account and its mailbox (the services use the account id
    with the POP3 user and host), so two mailboxes never share an id even when their
    servers hand out the same UIDLs, and one message always gets the same id.
    """
    digest = hashlib.sha256(f"{account_key}\0{uidl}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:32]


def id_header(did: str) -> bytes:
    """The header line an external delivery adds in front of the message."""
    if not did.isalnum() or not did.isascii():
        raise ValueError("a delivery id is letters and digits")
    return f"{ID_HEADER}: {did}\r\n".encode("ascii")


class Verdict(str, enum.Enum):
    """What a scanner says of a message."""

    ACCEPT = "accept"  #: deliver it as the filters say
    JUNK = "junk"  #: deliver it to Junk (flagged as spam for external deliveries), no filters
    REJECT = "reject"  #: do not deliver it; it counts as seen (never fetched again)

    @property
    def severity(self) -> int:
        return {"accept": 0, "junk": 1, "reject": 2}[self.value]


@dataclass(frozen=True)
class ScanResult:
    """A scanner's verdict and, for junk and reject, the reason kept for the user."""

    verdict: Verdict = Verdict.ACCEPT
    reason: str = ""


ACCEPTED = ScanResult()


@dataclass(frozen=True)
class DeliveryContext:
    """What a delivery is opened with, once per fetch session of one account."""

    account_id: int
    owner_id: str
    #: the network policy of the host's own servers (the CA file, the timeouts); private
    #: and loopback addresses are allowed: the host configured them, not a user
    net: NetPolicy


@dataclass
class DeliveryItem:
    """One message for a delivery: the bytes exactly as fetched and where they go."""

    account_id: int
    owner_id: str
    uidl: str
    delivery_id: str  #: :func:`delivery_id`
    size: int  #: octets of ``spool``
    spool: IO[bytes]  #: at position 0; valid only during the call
    meta: MessageMeta
    folder: str = INBOX  #: IMAP-style name ("INBOX", "Junk", a filter's folder; "/" nests)
    seen: bool = False  #: a filter marked it read
    flagged: bool = False  #: a filter flagged it
    junk: bool = False  #: the scanner said junk (``folder`` is then "Junk")
    junk_reason: str = ""


class DeliveryError(PopAccountsError):
    """The fetched message could not be handed to the mail platform.

    ``maybe_delivered``: the platform may have the message although it did not say so
    (the connection was lost after the message was sent): a retry must check first.
    """

    def __init__(self, message: str | None = None, *, detail: str | bytes | None = None,
                 maybe_delivered: bool = False) -> None:
        super().__init__(message, detail=detail)
        self.maybe_delivered = maybe_delivered


class DeliveryUnavailable(DeliveryError):
    code = "delivery_unavailable"
    title = N_("Your mail platform could not take the new mail just now")
    help = N_("Fetching stopped and the mail waits on the server; it is tried again "
              "automatically. If this lasts, tell the site's administrator.")
    transient = True


class DeliveryRefused(DeliveryError):
    code = "delivery_refused"
    title = N_("Your mail platform refused the new mail")
    help = N_("The mail waits on the server. The site's administrator has to fix the "
              "delivery settings; then check this account again.")


class PlatformFull(DeliveryUnavailable):
    """The user's mailbox on the platform is full (an enhanced status x.2.2): the
    platform's own quota, which the host enforces; retried with back-off."""

    code = "platform_full"
    title = N_("Your mailbox on this site is full")
    help = N_("The new mail waits on the other server. Delete some mail here; fetching "
              "goes on by itself.")
