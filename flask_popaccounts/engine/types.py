"""The engine's data types and the two storage interfaces it talks to.

This module is the contract between the pure engine and the storage layer: the
services build a :class:`Ledger` and a :class:`Sink` over SQL tables, the tests and
benchmarks build them over whatever they like, and :func:`~.sync.fetch` needs
nothing else.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Protocol


class Security(str, enum.Enum):
    """How the connection to the POP3 server is protected."""

    SSL = "ssl"  #: implicit TLS from the first byte (port 995)
    STARTTLS = "starttls"  #: plain connect, then STLS, required (port 110)
    PLAIN = "plain"  #: no TLS at all; only when the host application allows it


class AuthMethod(str, enum.Enum):
    """How the user proves who they are to the server."""

    PASSWORD = "password"  #: USER/PASS, or SASL PLAIN when USER is not offered  # noqa: S105
    XOAUTH2 = "xoauth2"  #: SASL XOAUTH2 with an OAuth2 access token


class DeletePolicy(str, enum.Enum):
    """What happens to a message on the server once it is stored here."""

    KEEP = "keep"
    DELETE = "delete"  #: DELE right after the message is durably stored
    AFTER_DAYS = "after_days"  #: DELE once it has been stored for N days


@dataclass(frozen=True)
class NetPolicy:
    """What the host application allows connections to do (from POPACCOUNTS_* config)."""

    allow_private: bool = False  #: allow loopback/private/link-local targets (tests, on-premise)
    allowed_ports: frozenset[int] = frozenset({110, 995})
    allow_plaintext: bool = False  #: allow Security.PLAIN
    ca_file: str | None = None  #: extra CA bundle on top of the system trust store
    connect_timeout: float = 15.0  #: seconds for TCP connect and for the TLS handshake
    read_timeout: float = 60.0  #: seconds for any single read
    #: seconds for a whole session: a server that trickles bytes just fast enough to
    #: beat read_timeout must not hold a worker forever (None: no limit)
    session_timeout: float | None = 1800.0
    source_address: tuple[str, int] | None = None  #: bind before connecting (tests)
    max_listing: int = 300_000  #: most messages a mailbox may list (POPACCOUNTS_MAX_LISTING)
    #: exact ``(IP address, port)`` pairs the host trusts (POPACCOUNTS_TRUSTED_SERVERS):
    #: allowed although not public, on their own port; judged on the address resolved
    #: and connected to, never on the name typed. Addresses in ``ipaddress``'s text form.
    trusted_servers: frozenset[tuple[str, int]] = frozenset()
    #: a CA bundle trusted only on connections to ``trusted_servers`` (a demo's own CA)
    trusted_ca_file: str | None = None


@dataclass(frozen=True)
class ServerSpec:
    """Where and how to connect."""

    host: str
    port: int
    security: Security
    username: str


@dataclass(frozen=True, repr=False)
class Credentials:
    """The secret, never printed: ``repr`` hides it so logs and tracebacks stay clean."""

    method: AuthMethod
    secret: str  #: the password, or the OAuth2 access token

    def __repr__(self) -> str:
        return f"Credentials(method={self.method.value!r}, secret=<hidden>)"


@dataclass(frozen=True)
class RetrievalPolicy:
    """The account's retrieval settings."""

    delete: DeletePolicy = DeletePolicy.KEEP
    delete_after_days: int = 0
    max_message_size: int = 50 * 1024 * 1024  #: larger messages (by LIST size) are skipped
    max_messages_per_session: int = 1000  #: QUIT after this many; the caller runs again
    commit_every: int = 256  #: messages per durable commit (group commit)
    commit_bytes: int = 16 * 1024 * 1024  #: or this many bytes, whichever comes first
    accept_uidl_reset: bool = False  #: the user confirmed: import after a UIDL reset
    #: UIDLs not to ask for: set aside after failing repeatedly, or over the size limit
    #: and already known (an idle poll then needs no LIST when nothing else is new)
    skip_uidls: frozenset[str] = frozenset()
    #: UIDLs to fetch even when over ``max_message_size`` (the user's "fetch anyway")
    fetch_anyway: frozenset[str] = frozenset()
    #: UIDLs not to DELE this session: refused or ignored before, retried later
    hold_dele: frozenset[str] = frozenset()
    #: UIDLs the caller keeps notes on: ``FetchReport.not_listed`` says which are gone
    remembered: frozenset[str] = frozenset()
    #: at most this many TOP requests per session for messages over the size limit
    max_top: int = 20
    #: first import "from now on" (R17: POP cannot select by date): record every UIDL
    #: listed as seen (:meth:`SeenLedger.mark_seen`), download and delete nothing
    mark_listing_seen: bool = False


@dataclass(frozen=True)
class LedgerEntry:
    """What the ledger knows of one UIDL that was stored here."""

    stored_at: datetime  #: when it was durably stored (aware, UTC)
    on_server: bool  #: still listed by the server at the last poll
    #: seen at the first import "from now on", never stored here: never deleted either
    seen_only: bool = False


class Ledger(Protocol):
    """The account's memory of UIDLs already stored (the point of truth)."""

    def entries(self) -> Mapping[str, LedgerEntry]:
        """Every UIDL ever stored for this account, committed state only."""
        ...

    def mark_gone(self, uidls: Collection[str]) -> None:
        """Durably record that these UIDLs are no longer on the server."""
        ...


class SeenLedger(Ledger, Protocol):
    """A ledger that can also note UIDLs as seen without storing them (the first import
    "from now on", ``RetrievalPolicy.mark_listing_seen``)."""

    def mark_seen(self, uidls: Collection[str]) -> None:
        """Durably record these UIDLs as seen, not stored (``LedgerEntry.seen_only``), and
        that the first import is done, in one transaction (even when ``uidls`` is empty)."""
        ...


@dataclass
class MessageMeta:
    """Metadata parsed from a message's headers (never fails: see ``parse``)."""

    sent_at: datetime  #: Date header, else first Received date, else fetch time (aware, UTC)
    sent_at_source: str  #: "date" | "received" | "fetched"
    from_addr: str  #: decoded display form, "" when absent
    to_addrs: str  #: decoded display form of To (and Cc), "" when absent
    subject: str  #: decoded (RFC 2047), "" when absent
    message_id: str  #: "" when absent
    size: int  #: octets stored
    defects: list[str] = field(default_factory=list)  #: parse problems, for logs


@dataclass
class RetrievedMessage:
    """One complete message, spooled; handed to :meth:`Sink.add`."""

    uidl: str
    size: int  #: octets received (after dot-unstuffing, CRLF line ends kept)
    spool: IO[bytes]  #: positioned at 0; the raw message exactly as the server sent it
    meta: MessageMeta


@dataclass(frozen=True)
class Refused:
    """A message the server would not hand over: RETR answered ``-ERR``.

    Yielded by :meth:`~.pop3.POP3Client.retrieve` in the message's place; the session
    goes on with the next one.
    """

    num: int  #: the message number in this session
    text: str  #: the server's words (RESP-CODE included), cleaned and truncated


class Sink(Protocol):
    """Stores messages durably, each together with its ledger row."""

    def add(self, message: RetrievedMessage) -> None:
        """Stage one message, its metadata and its ledger row in the current transaction.

        The spool is only valid during this call.
        """
        ...

    def commit(self) -> None:
        """Make everything staged durable. Only after this may the server copy be deleted."""
        ...

    def rollback(self) -> None:
        """Drop everything staged since the last commit."""
        ...


@dataclass(frozen=True)
class Progress:
    """Reported while a fetch runs (R16)."""

    total: int  #: new messages to fetch in this session
    done: int
    bytes_total: int
    bytes_done: int
    #: new messages on the server in all: more than ``total`` when a session is capped
    #: (``max_messages_per_session``) and later sessions take the rest
    backlog: int = 0


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class TooLarge:
    """A message left on the server for its size, with what TOP told of it."""

    size: int  #: LIST size, octets
    from_addr: str = ""  #: "" when TOP was not offered or not asked
    subject: str = ""


@dataclass
class FetchReport:
    """What one fetch session did."""

    server_count: int = 0  #: messages listed by the server
    new: int = 0  #: messages new to us at the start of the session
    stored: int = 0
    bytes_stored: int = 0
    deleted: int = 0  #: DELEs confirmed by QUIT
    skipped_too_large: list[str] = field(default_factory=list)  #: UIDLs over the size limit
    more_pending: bool = False  #: max_messages_per_session was reached
    #: UIDL -> the server's words when it refused to hand it over (RETR -ERR)
    refused: dict[str, str] = field(default_factory=dict)
    uidl_duplicates: int = 0  #: messages listed under a UIDL an earlier one had
    uidl_nonconforming: int = 0  #: UIDLs outside RFC 1939 (keyed by their hash)
    capabilities: frozenset[str] = frozenset()
    #: new messages over the size limit (not in ``skip_uidls``): UIDL -> size, sender...
    too_large: dict[str, TooLarge] = field(default_factory=dict)
    #: the UIDL being retrieved when the connection failed (None: no message in flight)
    in_flight: str | None = None
    in_flight_size: int = 0  #: its LIST size
    #: complete messages committed although the session then failed (network/server)
    committed_on_failure: int = 0
    dele_refused: list[str] = field(default_factory=list)  #: DELE answered -ERR
    #: UIDLs deleted earlier (DELE and QUIT accepted) that the server lists again
    reappeared: list[str] = field(default_factory=list)
    #: UIDLs of the policy's ``remembered`` the server no longer lists
    not_listed: list[str] = field(default_factory=list)
    #: UIDLs recorded as seen without downloading them (``mark_listing_seen``)
    marked_seen: int = 0

    @property
    def login_delay(self) -> int | None:
        """Seconds the server wants between logins (its CAPA ``LOGIN-DELAY n``), if any."""
        for cap in self.capabilities:
            if cap.startswith("LOGIN-DELAY=") and cap[12:].isdigit():
                return int(cap[12:])
        return None
