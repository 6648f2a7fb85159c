"""The host's hooks: where fetched mail goes, what a scanner says, quota, user look-ups.

The design card's "Python hooks": a host platform plugs in here, with embedded defaults,
through one typed registry (:class:`Hooks`, given as ``PopAccounts(app, hooks=...)``)
of small Protocols. Notifications stay the blinker signals of :mod:`.signals`.

========================  ===========================================================
hook                      contract
========================  ===========================================================
``delivery``              a :class:`Delivery`: where each fetched message goes. None:
                          the built-in SQL store (the default). Built in besides:
                          ``storage.deliveries.maildir.Maildir`` and
                          ``storage.deliveries.lmtp.Lmtp``.
``scanners``              :class:`Scanner` callables, asked before each delivery; the
                          strictest verdict wins (reject, then junk, then accept).
``quota``                 owner id -> bytes (None: unlimited) for the built-in store
                          (also ``PopAccounts(quota=...)``; external platforms keep
                          their own quota: an LMTP "mailbox full" pauses the fetch).
``display_name``          owner id -> the user's name (None: unknown).
``timezone``              owner id -> IANA zone such as "Asia/Riyadh" (also
                          ``PopAccounts(timezone=...)``; see :mod:`.i18n`).
========================  ===========================================================

**The exactly-once contract of a delivery.** The fetch deletes a message from the
outside server only after its delivery is recorded in the ledger (the UIDL table), and
never asks for a recorded message again. Between the delivery and that record a crash
can happen; what the delivery promises decides what happens then:

- ``idempotent = True``: delivering the same ``delivery_id`` again is a no-op (a
  deterministic Maildir file name, a unique key in the host's table). The fetch just
  delivers again after a crash: exactly once. ``flush()`` must make what was delivered
  durable: the fetch calls it before each ledger commit.
- ``idempotent = False`` (a mail server, LMTP): the fetch records an *intent* before
  each delivery and the result after it. After a crash, a message whose intent is still
  open is looked for with ``find(item)``: True (it arrived: only recorded), False (it
  did not: delivered), None (cannot tell: delivered again; at most the one message that
  was in flight when the crash came may then arrive twice).

A delivery raises :class:`~.engine.delivery.DeliveryUnavailable` when the platform
cannot take the message now (transient: the fetch stops, the message stays on the
outside server and is tried again with back-off) and
:class:`~.engine.delivery.DeliveryRefused` when it refuses it for good (a named error on
the account card). ``maybe_delivered=True`` on either says the platform may have it
anyway (the connection was lost after the message went out): the intent stays open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, runtime_checkable

from .engine.delivery import (
    ACCEPTED,
    DeliveryContext,
    DeliveryItem,
    DeliveryRefused,
    DeliveryUnavailable,
    ScanResult,
    Verdict,
)
from .engine.types import RetrievedMessage

__all__ = [
    "ACCEPTED",
    "Delivery",
    "DeliveryContext",
    "DeliveryItem",
    "DeliveryRefused",
    "DeliverySession",
    "DeliveryUnavailable",
    "Hooks",
    "NameHook",
    "QuotaHook",
    "ScanResult",
    "Scanner",
    "Verdict",
]

#: owner id -> bytes (None: unlimited)
QuotaHook = Callable[[str], "int | None"]
#: owner id -> a text such as a name or a time zone (None: unknown)
NameHook = Callable[[str], "str | None"]


@runtime_checkable
class DeliverySession(Protocol):
    """A delivery opened for one fetch session of one account."""

    def deliver(self, item: DeliveryItem) -> None:
        """Hand one message to the platform; raise the delivery errors on failure."""
        ...

    def find(self, item: DeliveryItem) -> bool | None:
        """After a crash: is this message there already? None: cannot tell."""
        ...

    def flush(self) -> None:
        """Make what was delivered durable (called before each ledger commit)."""
        ...

    def close(self) -> None:
        """End the session (also after a failure)."""
        ...


@runtime_checkable
class Delivery(Protocol):
    """Where fetched mail goes; one object for the app, opened per fetch session."""

    #: a short name for logs and records ("maildir", "lmtp", the host's)
    name: str
    #: True when delivering one ``delivery_id`` twice stores it once (see above)
    idempotent: bool

    def open(self, context: DeliveryContext) -> DeliverySession:
        """A session for one account; may connect lazily, at the first delivery."""
        ...


class Scanner(Protocol):
    """A spam or virus check, asked before each delivery.

    ``message.spool`` is at position 0 and must be left readable (it is rewound after
    the call). Return None or :data:`~.engine.delivery.ACCEPTED` to accept.
    """

    def __call__(self, message: RetrievedMessage, *, owner_id: str,
                 account_id: int) -> ScanResult | None: ...


F = TypeVar("F", bound=Callable[..., object])


@dataclass
class Hooks:
    """The host's hooks (every one optional; see the module docstring)."""

    delivery: Delivery | None = None
    scanners: list[Scanner] = field(default_factory=list)
    quota: QuotaHook | None = None
    display_name: NameHook | None = None
    timezone: NameHook | None = None

    def __post_init__(self) -> None:
        if self.delivery is not None and not isinstance(self.delivery, Delivery):
            raise TypeError("hooks.delivery must have name, idempotent and open(context)")
        for scanner in self.scanners:
            if not callable(scanner):
                raise TypeError(f"a scanner must be callable: {scanner!r}")

    def scanner(self, fn: F) -> F:
        """Register a scanner; usable as a decorator (``@hooks.scanner``)."""
        if not callable(fn):
            raise TypeError(f"a scanner must be callable: {fn!r}")
        self.scanners.append(fn)  # type: ignore[arg-type]
        return fn

    def scan(self, message: RetrievedMessage, *, owner_id: str, account_id: int
             ) -> ScanResult:
        """Every scanner's verdict, the strictest kept (ties: the first one's reason)."""
        result = ACCEPTED
        for scanner in self.scanners:
            try:
                said = scanner(message, owner_id=owner_id, account_id=account_id)
            finally:
                message.spool.seek(0)
            if said is not None and said.verdict.severity > result.verdict.severity:
                result = said
        return result

    def user_display_name(self, owner_id: str) -> str | None:
        """The user's name from the host (None without a hook or when it does not know)."""
        return self.display_name(str(owner_id)) if self.display_name is not None else None

    def user_timezone(self, owner_id: str) -> str | None:
        """The user's IANA time zone from the host (None: not known)."""
        return self.timezone(str(owner_id)) if self.timezone is not None else None


def merged(hooks: Hooks | None, *, quota: QuotaHook | None,
           timezone: NameHook | None) -> Hooks:
    """``hooks`` with the older keyword hooks of ``PopAccounts`` folded in (each given
    once: in ``hooks`` or as a keyword, never both)."""
    out = hooks if hooks is not None else Hooks()
    for name, value in (("quota", quota), ("timezone", timezone)):
        if value is None:
            continue
        if getattr(out, name) is not None and getattr(out, name) is not value:
            raise TypeError(f"{name}= is given twice: as a keyword and in hooks=")
        setattr(out, name, value)
    return out
