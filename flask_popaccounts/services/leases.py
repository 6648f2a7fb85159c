"""Leases on the database's clock, renewed by one heartbeat thread per owner, and the
fence that stops a fetch whose lease can no longer be proven.

Lease times are the database's (``db_now``: ``now()`` on PostgreSQL, ``strftime('now')``
on SQLite): every machine sharing the database agrees on when a lease ends, whatever its
own clock says. :mod:`.scheduling` takes the leases; this module keeps them alive
(:class:`LeaseHeartbeat`) and tells a fetch when to stop (:class:`LeaseLost`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Collection
from datetime import timedelta
from types import TracebackType
from typing import Any

from sqlalchemy import ColumnElement, Dialect, func, literal, select, update
from sqlalchemy.orm import Session, sessionmaker

from ..engine.clock import utcnow
from ..storage.models import Account, UTCDateTime

log = logging.getLogger("flask_popaccounts.services.leases")


# -- the database's clock ----------------------------------------------------------------
#
# Lease times are the database's: every machine sharing it agrees on when a lease ends,
# whatever their own clocks say (clock skew between app servers). Due times
# (``next_due_at``) stay on the app's clock, which tests move on.

_SQLITE_FORMAT = "%Y-%m-%d %H:%M:%f"  # + "000": the form SQLAlchemy stores DateTime in


def db_now(dialect: Dialect, seconds: float = 0.0) -> ColumnElement[Any]:
    """The database's "now" (plus ``seconds``), as an SQL expression."""
    if dialect.name == "postgresql":
        now: ColumnElement[Any] = func.now()
        if seconds:
            return now + func.make_interval(0, 0, 0, 0, 0, 0, float(seconds))
        return now
    if dialect.name == "sqlite":
        # strftime gives milliseconds; SQLAlchemy stores "YYYY-MM-DD HH:MM:SS.ffffff",
        # so the text compares (and reads back) like the stored values.
        return func.strftime(_SQLITE_FORMAT, "now", f"{float(seconds):+.3f} seconds").op("||")(
            literal("000"))
    return literal(utcnow() + timedelta(seconds=seconds), UTCDateTime)


def renew_ids(session: Session, worker: str, account_ids: Collection[int],
              lease_seconds: float) -> set[int]:
    """Extend this worker's leases on these accounts in one UPDATE; commits.

    Returns the ids whose lease was still ours (and is now extended); the others were
    taken over by someone else. The new expiry is the database's now + the lease.
    """
    if not account_ids:
        return set()
    dialect = session.get_bind().dialect
    stmt = (
        update(Account)
        .where(Account.id.in_(list(account_ids)), Account.lease_owner == worker)
        .values(lease_expires_at=db_now(dialect, lease_seconds))
        .execution_options(synchronize_session=False)
    )
    if dialect.update_returning:
        ours = {int(row[0]) for row in session.execute(stmt.returning(Account.id))}
    else:
        session.execute(stmt)
        ours = {int(i) for i in session.scalars(select(Account.id).where(
            Account.id.in_(list(account_ids)), Account.lease_owner == worker))}
    session.commit()
    return ours


class LeaseLost(RuntimeError):
    """Our lease on the account was taken over (or may have run out) while we fetched;
    we stop before the next command to the server."""

    def __init__(self, account_id: int, why: str = "taken over") -> None:
        super().__init__(f"lease on account {account_id} lost ({why})")
        self.account_id = account_id


class LeaseHeartbeat:
    """Keeps one account's lease renewed while a fetch runs, and fences the fetch.

    ``with LeaseHeartbeat(factory, worker, account_id, lease_seconds) as hb: ...``;
    call :meth:`check` before each command that touches the mailbox (after each
    message, before DELE and QUIT): it raises :class:`LeaseLost` once a renewal found
    the lease no longer ours, and also when no renewal has succeeded for so long that
    the lease may have run out (the database away, renewals starved): a fetch that
    cannot prove it still holds the account stops rather than risk sharing the
    mailbox with the process that took it over.

    The heartbeats of one ``(factory, worker, lease_seconds, interval)`` share one
    thread (:class:`_Keeper`): each beat (every quarter of the lease by default)
    renews all their leases with one UPDATE in a short session of its own; ``factory``
    should be the runtime's heartbeat sessions (a connection pool of their own, so the
    beat never waits behind busy workers). A renewal that fails is retried at the next
    beat.
    """

    def __init__(self, factory: sessionmaker[Session], worker: str, account_id: int,
                 lease_seconds: float, *, interval: float | None = None) -> None:
        self.factory = factory
        self.worker = worker
        self.account_id = account_id
        self.lease_seconds = lease_seconds
        self.interval = interval if interval is not None else max(0.05, lease_seconds / 4)
        self.renewals = 0
        self._lost = threading.Event()
        self._keeper: _Keeper | None = None
        #: monotonic time before the last renewal that succeeded (the claim: now)
        self.confirmed_at = time.monotonic()

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    @property
    def fence_seconds(self) -> float:
        """How long after its last confirmed renewal the lease is no longer trusted:
        the lease minus one beat, so the fetch stops while the lease still holds."""
        return max(self.lease_seconds - self.interval, self.lease_seconds / 2)

    def check(self) -> None:
        """Raise :class:`LeaseLost` when the lease was taken over or may have run out."""
        if self._lost.is_set():
            raise LeaseLost(self.account_id)
        if time.monotonic() - self.confirmed_at > self.fence_seconds:
            self._lost.set()
            log.warning("lease on account %s not renewed for %.1f s: %s stops its fetch",
                        self.account_id, time.monotonic() - self.confirmed_at, self.worker)
            raise LeaseLost(self.account_id, "not renewed in time")

    def beat(self) -> bool:
        """Renew once now; False when the lease is no longer ours."""
        started = time.monotonic()
        with self.factory() as session:
            ours = renew_ids(session, self.worker, [self.account_id], self.lease_seconds)
        self._renewed(self.account_id in ours, started)
        return not self.lost

    def _renewed(self, ok: bool, started: float) -> None:
        if ok:
            self.renewals += 1
            self.confirmed_at = max(self.confirmed_at, started)
        elif not self._lost.is_set():
            self._lost.set()
            log.warning("lease on account %s lost by %s", self.account_id, self.worker)

    def stop(self) -> None:
        """Stop renewing (idempotent): before the lease is given back."""
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.remove(self)

    def __enter__(self) -> LeaseHeartbeat:
        self._keeper = _Keeper.add(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class _Keeper:
    """The one thread renewing the leases of all heartbeats with the same key."""

    _registry: dict[tuple[object, ...], _Keeper] = {}
    _registry_lock = threading.Lock()

    def __init__(self, key: tuple[object, ...], hb: LeaseHeartbeat) -> None:
        self.key = key
        self.pid = os.getpid()
        self.factory = hb.factory
        self.worker = hb.worker
        self.lease_seconds = hb.lease_seconds
        self.interval = hb.interval
        self.beats: set[LeaseHeartbeat] = set()
        self.thread: threading.Thread | None = None

    @classmethod
    def add(cls, hb: LeaseHeartbeat) -> _Keeper:
        key = (hb.factory, hb.worker, hb.lease_seconds, hb.interval)
        with cls._registry_lock:
            keeper = cls._registry.get(key)
            # (after a fork the parent's thread does not exist here: start afresh)
            if keeper is None or keeper.pid != os.getpid():
                keeper = cls._registry[key] = _Keeper(key, hb)
            keeper.beats.add(hb)
            if keeper.thread is None:
                keeper.thread = threading.Thread(
                    target=keeper._run, daemon=True,
                    name=f"popaccounts-lease-{hb.worker}")
                keeper.thread.start()
        return keeper

    def remove(self, hb: LeaseHeartbeat) -> None:
        with self._registry_lock:
            self.beats.discard(hb)

    def _run(self) -> None:
        stop = threading.Event()  # never set: an interruptible sleep
        while True:
            stop.wait(self.interval)
            with self._registry_lock:
                beats = list(self.beats)
                if not beats:  # idle for a whole interval: the next fetch starts anew
                    self.thread = None
                    if self._registry.get(self.key) is self:
                        del self._registry[self.key]
                    return
            started = time.monotonic()
            try:
                with self.factory() as session:
                    ours = renew_ids(session, self.worker, {hb.account_id for hb in beats},
                                     self.lease_seconds)
            except Exception:
                log.warning("could not renew the leases of %s", self.worker, exc_info=True)
                continue
            with self._registry_lock:
                live = [hb for hb in beats if hb in self.beats]  # not stopped meanwhile
            for hb in live:
                hb._renewed(hb.account_id in ours, started)
