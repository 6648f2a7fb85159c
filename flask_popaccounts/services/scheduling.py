"""Claiming due accounts with a lease, so one account is never fetched twice at once.

A claim is a lease on the account row (``lease_owner``, ``lease_expires_at``). It is
taken with one atomic statement, so any number of threads, processes or machines
sharing the database agree on who fetches what:

- PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` picks due rows that no other
  transaction is looking at, and the lease is written in the same transaction.
- SQLite: one ``UPDATE ... WHERE id IN (due, limited) RETURNING id``, atomic under
  its single writer lock, so concurrent claimers each get different accounts.
- Databases without RETURNING: a conditional ``UPDATE ... WHERE lease is free`` per
  candidate; the row count says whether we won.

A process that dies stops renewing its leases; they expire and another process takes
the account over. Even if a lease were lost while a fetch still runs, the ledger's
primary key (account, UIDL) makes a second copy of a message impossible: the
overlapping commit fails and is rolled back.

Every fetch, whoever started it (the scheduler's pool, a "check now" thread, the CLI),
runs inside a :class:`LeaseHeartbeat` that keeps its lease renewed every third of the
lease time, so a long first sync never loses its claim; when a renewal finds the lease
gone (this process stalled past its expiry and another took the account over), the
fetch is stopped at the next message (:class:`LeaseLost`). The heartbeats of one lease
owner (a scheduler and all its workers) share one thread, which renews all their
leases with one UPDATE per beat.

"Check now" (:func:`make_due_now`) sets ``check_requested_at``: the account is due at
once and is claimed before every other due account, even when it waits for the user
for a reason other than its credentials (the user pressed the button, so one attempt
is wanted). Accounts whose password or token was refused are never claimed: no login
attempt until the user updates them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Collection
from datetime import datetime, timedelta
from types import TracebackType

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from ..engine.clock import Clock, utcnow
from ..storage.models import Account, AccountStatus, value_of

log = logging.getLogger("flask_popaccounts.services.scheduling")

#: Statuses whose accounts the scheduler leaves alone until the user acts.
PAUSED_STATUSES = (
    AccountStatus.NEEDS_PASSWORD.value,
    AccountStatus.NEEDS_REAUTH.value,
    AccountStatus.NEEDS_ATTENTION.value,
    AccountStatus.DISABLED.value,
)

#: Statuses that forbid any login attempt, even one the user asked for with "check now".
NO_LOGIN_STATUSES = (
    AccountStatus.NEEDS_PASSWORD.value,
    AccountStatus.NEEDS_REAUTH.value,
)


#: ... and those that even "check now" leaves alone until the user acts.
USER_HOLD_STATUSES = (*NO_LOGIN_STATUSES, AccountStatus.DISABLED.value)


def waits_for_user(account: Account) -> bool:
    """Nothing fetches this account, not even "check now", until its user acts."""
    return not account.enabled or value_of(account.status) in USER_HOLD_STATUSES


def new_worker_id() -> str:
    """A lease owner id: a scheduler instance, or a one-off fetch (check now, the CLI)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"




def _due_clause(now: datetime) -> ColumnElement[bool]:
    return and_(
        Account.enabled.is_(True),
        or_(
            and_(Account.status.not_in(PAUSED_STATUSES),
                 or_(Account.next_due_at.is_(None), Account.next_due_at <= now)),
            and_(Account.check_requested_at.is_not(None),
                 Account.status.not_in(USER_HOLD_STATUSES)),
        ),
        _lease_free(now),
    )


def _lease_free(now: datetime) -> ColumnElement[bool]:
    return or_(Account.lease_owner.is_(None), Account.lease_expires_at < now)


def claim_due(session: Session, worker: str, limit: int, lease_seconds: int,
              *, now: datetime | None = None) -> list[int]:
    """Claim up to ``limit`` due accounts for ``worker``; returns their ids (committed)."""
    if limit <= 0:
        return []
    now = now or utcnow()
    expires = now + timedelta(seconds=lease_seconds)
    due = (
        select(Account.id)
        .where(_due_clause(now))
        # "check now" first, then never-fetched accounts, then the longest overdue.
        .order_by(Account.check_requested_at.is_(None), Account.next_due_at.is_(None).desc(),
                  Account.next_due_at, Account.id)
        .limit(limit)
    )
    dialect = session.get_bind().dialect
    claimed: list[int] = []
    if dialect.name == "postgresql":
        ids = list(session.scalars(due.with_for_update(skip_locked=True)))
        if ids:
            session.execute(
                update(Account)
                .where(Account.id.in_(ids))
                .values(lease_owner=worker, lease_expires_at=expires, check_requested_at=None)
            )
        claimed = ids
    elif dialect.update_returning:
        # SQLite: ONE statement picks and leases the due rows under the write lock, so
        # concurrent claimers never pick the same row and every call gets up to
        # ``limit`` accounts while any are due. (Reading candidates first and then
        # racing for them made all idle workers race for the same top row: the losers
        # got nothing and idled until the next tick, while hundreds were due.)
        # For several, the order is taken from a plain read first: RETURNING's order
        # is arbitrary and check_requested_at, which decides it, is cleared by the
        # claim. (A worker claiming its next account asks for one: no read needed.)
        order: dict[int, int] = {}
        if limit > 1:
            order = {aid: i for i, aid in enumerate(session.scalars(due.limit(limit * 2 + 8)))}
        session.commit()  # end any read transaction: the UPDATE starts a fresh one
        if order or limit == 1:
            rows = session.execute(
                update(Account)
                .where(Account.id.in_(due.correlate(None).scalar_subquery()))
                .values(lease_owner=worker, lease_expires_at=expires, check_requested_at=None)
                .returning(Account.id)
                .execution_options(synchronize_session=False)
            )
            ids = [row[0] for row in rows]
            claimed = sorted(ids, key=lambda aid: (order.get(aid, len(order)), aid))
    else:
        # Neither (no RETURNING): a conditional UPDATE per candidate, the row count
        # says whether we won; read more candidates than wanted so that losing a race
        # for one does not leave the caller empty-handed while others are due.
        candidates = session.scalars(due.limit(limit * 4 + 16)).all()
        session.commit()
        for account_id in candidates:
            if len(claimed) >= limit:
                break
            result = session.execute(
                update(Account)
                .where(Account.id == account_id, _due_clause(now))
                .values(lease_owner=worker, lease_expires_at=expires, check_requested_at=None)
                .execution_options(synchronize_session=False)
            )
            session.commit()
            if result.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(account_id)
    session.commit()
    return claimed


def renew_ids(session: Session, worker: str, account_ids: Collection[int],
              lease_seconds: int, *, now: datetime | None = None) -> set[int]:
    """Extend this worker's leases on these accounts in one UPDATE; commits.

    Returns the ids whose lease was still ours (and is now extended); the others were
    taken over by someone else.
    """
    if not account_ids:
        return set()
    now = now or utcnow()
    stmt = (
        update(Account)
        .where(Account.id.in_(list(account_ids)), Account.lease_owner == worker)
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    if session.get_bind().dialect.update_returning:
        ours = {int(row[0]) for row in session.execute(stmt.returning(Account.id))}
    else:
        session.execute(stmt)
        ours = {int(i) for i in session.scalars(select(Account.id).where(
            Account.id.in_(list(account_ids)), Account.lease_owner == worker))}
    session.commit()
    return ours


def claim(session: Session, worker: str, account_id: int, lease_seconds: int,
          *, now: datetime | None = None) -> bool:
    """Take one account's lease for ``worker`` if it is free or expired; commits.

    For fetches started outside the dispatcher (a "check now" thread, the CLI): due
    or not, paused or not (the caller decides what may be fetched). One conditional
    UPDATE, atomic on every backend (PostgreSQL re-checks the WHERE clause after
    waiting for a concurrent writer), so of two claimants one wins. Re-claiming
    one's own lease extends it.
    """
    now = now or utcnow()
    result = session.execute(
        update(Account)
        .where(
            Account.id == account_id,
            or_(_lease_free(now), Account.lease_owner == worker),
        )
        .values(lease_owner=worker, lease_expires_at=now + timedelta(seconds=lease_seconds),
                check_requested_at=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return int(result.rowcount) == 1  # type: ignore[attr-defined]


def lease_is_live(session: Session, account_id: int, *, now: datetime | None = None) -> bool:
    """True when someone holds an unexpired lease on the account (a fetch is running)."""
    now = now or utcnow()
    held = session.scalar(
        select(Account.id).where(Account.id == account_id, Account.lease_owner.is_not(None),
                                 Account.lease_expires_at >= now)
    )
    return held is not None


def make_due_now(session: Session, account_id: int, *, now: datetime | None = None) -> None:
    """"Check now": the account becomes due at once and goes first (the claim still
    guards it); commits."""
    now = now or utcnow()
    session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(next_due_at=now, check_requested_at=now)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def stage_release(session: Session, worker: str | None, account_id: int) -> None:
    """Add "give the lease back, if still ours" to ``session``'s transaction (no commit;
    nothing when ``worker`` is None): a fetch's outcome and its release commit together."""
    if worker is not None:
        session.execute(
            update(Account)
            .where(Account.id == account_id, Account.lease_owner == worker)
            .values(lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )


def release(session: Session, worker: str, account_id: int) -> None:
    """Give the lease back (only if it is still ours); commits."""
    stage_release(session, worker, account_id)
    session.commit()


class LeaseLost(RuntimeError):
    """Our lease on the account was taken over while we fetched; we stop at once."""

    def __init__(self, account_id: int) -> None:
        super().__init__(f"lease on account {account_id} lost")
        self.account_id = account_id


class LeaseHeartbeat:
    """Keeps one account's lease renewed while a fetch runs.

    ``with LeaseHeartbeat(factory, worker, account_id, lease_seconds) as hb: ...``;
    call :meth:`check` between units of work: it raises :class:`LeaseLost` once a
    renewal found that the lease is no longer ours.

    The heartbeats of one ``(factory, worker, lease_seconds, interval, clock)`` share one
    thread (:class:`_Keeper`): each beat renews all their leases with one UPDATE in a
    short session of its own, instead of one thread and one transaction per fetch. A
    renewal that fails (database briefly away) is retried at the next beat; the lease
    then either survives or is found lost.
    """

    def __init__(self, factory: sessionmaker[Session], worker: str, account_id: int,
                 lease_seconds: int, *, interval: float | None = None,
                 clock: Clock = utcnow) -> None:
        self.factory = factory
        self.clock = clock
        self.worker = worker
        self.account_id = account_id
        self.lease_seconds = lease_seconds
        self.interval = interval if interval is not None else max(0.2, lease_seconds / 3)
        self.renewals = 0
        self._lost = threading.Event()
        self._keeper: _Keeper | None = None

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def check(self) -> None:
        """Raise :class:`LeaseLost` when the lease was found taken over."""
        if self._lost.is_set():
            raise LeaseLost(self.account_id)

    def beat(self) -> bool:
        """Renew once now; False when the lease is no longer ours."""
        with self.factory() as session:
            ours = renew_ids(session, self.worker, [self.account_id], self.lease_seconds,
                             now=self.clock())
        self._renewed(self.account_id in ours)
        return not self.lost

    def _renewed(self, ok: bool) -> None:
        if ok:
            self.renewals += 1
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
        self.clock = hb.clock
        self.beats: set[LeaseHeartbeat] = set()
        self.thread: threading.Thread | None = None

    @classmethod
    def add(cls, hb: LeaseHeartbeat) -> _Keeper:
        key = (hb.factory, hb.worker, hb.lease_seconds, hb.interval, hb.clock)
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
            try:
                with self.factory() as session:
                    ours = renew_ids(session, self.worker, {hb.account_id for hb in beats},
                                     self.lease_seconds, now=self.clock())
            except Exception:
                log.warning("could not renew the leases of %s", self.worker, exc_info=True)
                continue
            with self._registry_lock:
                live = [hb for hb in beats if hb in self.beats]  # not stopped meanwhile
            for hb in live:
                hb._renewed(hb.account_id in ours)
