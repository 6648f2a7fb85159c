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

Lease times are the database's clock (:func:`.leases.db_now`), not each machine's;
due times (``next_due_at``) are the app's clock. Leases are short (60 s by default) so
that a crashed process's accounts are taken over within about a minute; a new claim
clears the progress a crashed fetch left on the row.

Every fetch, whoever started it (the scheduler's pool, a "check now" thread, the CLI),
runs inside a :class:`~.leases.LeaseHeartbeat` that renews its lease every quarter of
the lease time on a connection pool of its own, so a long first sync never loses its
claim; when a renewal finds the lease gone, or no renewal succeeded for most of the
lease, the fetch stops before its next command to the server (:class:`LeaseLost`,
the fence). The heartbeats of one lease owner (a scheduler and all its workers) share
one thread, which renews all their leases with one UPDATE per beat.

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
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Dialect, and_, or_, select, update
from sqlalchemy.orm import Session

from ..engine.clock import utcnow
from ..runtime import get_state
from ..storage.models import Account, AccountStatus, value_of
from .leases import LeaseHeartbeat, LeaseLost, db_now, renew_ids

__all__ = ["LeaseHeartbeat", "LeaseLost", "claim", "claim_due", "db_now", "dispatch_soon",
           "is_due", "lease_is_live", "make_due_now", "new_worker_id", "release", "renew_ids",
           "stage_release"]

if TYPE_CHECKING:
    from flask import Flask

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


def is_due(account: Account, now: datetime) -> bool:
    """The account would be claimed now if its lease were free (a saved account's first
    fetch, a "check now", a retry whose time came): what a page watches for. The same
    rule as the claim's own SQL."""
    if not account.enabled:
        return False
    status = value_of(account.status)
    if account.check_requested_at is not None and status not in USER_HOLD_STATUSES:
        return True
    return status not in PAUSED_STATUSES and (
        account.next_due_at is None or account.next_due_at <= now)


def dispatch_soon(app: Flask) -> None:
    """An account was just made due (saved, enabled, authorized): this process's
    scheduler, if it runs one, dispatches now instead of at its next tick, so a new
    account's first fetch starts while its user is still looking. (Schedulers of other
    processes find it at their own next tick.)"""
    sched = get_state(app).scheduler
    if sched is not None and getattr(sched, "running", False):
        sched.poke()


def new_worker_id() -> str:
    """A lease owner id: a scheduler instance, or a one-off fetch (check now, the CLI)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"




def _bind_dialect(session: Session) -> Dialect:
    return session.get_bind().dialect


def _due_clause(now: datetime, dialect: Dialect) -> ColumnElement[bool]:
    return and_(
        Account.enabled.is_(True),
        or_(
            and_(Account.status.not_in(PAUSED_STATUSES),
                 or_(Account.next_due_at.is_(None), Account.next_due_at <= now)),
            and_(Account.check_requested_at.is_not(None),
                 Account.status.not_in(USER_HOLD_STATUSES)),
        ),
        _lease_free(dialect),
    )


def _lease_free(dialect: Dialect) -> ColumnElement[bool]:
    return or_(Account.lease_owner.is_(None), Account.lease_expires_at < db_now(dialect))


def _leased_to(worker: str, dialect: Dialect, lease_seconds: float) -> dict[str, Any]:
    """The values of a fresh claim: a new owner, a new expiry, no stale progress (a
    crashed fetch's bar is not shown again as if it were the new one's)."""
    return dict(lease_owner=worker, lease_expires_at=db_now(dialect, lease_seconds),
                check_requested_at=None, progress_started_at=None, progress_done=None,
                progress_total=None, progress_bytes=None, progress_bytes_total=None)


def claim_due(session: Session, worker: str, limit: int, lease_seconds: float,
              *, now: datetime | None = None) -> list[int]:
    """Claim up to ``limit`` due accounts for ``worker``; returns their ids (committed).

    ``now`` is the app's time for due times; leases run on the database's clock.
    """
    if limit <= 0:
        return []
    now = now or utcnow()
    dialect = _bind_dialect(session)
    leased = _leased_to(worker, dialect, lease_seconds)
    due = (
        select(Account.id)
        .where(_due_clause(now, dialect))
        # "check now" first, then never-fetched accounts, then the longest overdue.
        .order_by(Account.check_requested_at.is_(None), Account.next_due_at.is_(None).desc(),
                  Account.next_due_at, Account.id)
        .limit(limit)
    )
    claimed: list[int] = []
    if dialect.name == "postgresql":
        ids = list(session.scalars(due.with_for_update(skip_locked=True)))
        if ids:
            session.execute(update(Account).where(Account.id.in_(ids)).values(**leased)
                            .execution_options(synchronize_session=False))
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
                .values(**leased)
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
                .where(Account.id == account_id, _due_clause(now, dialect))
                .values(**leased)
                .execution_options(synchronize_session=False)
            )
            session.commit()
            if result.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(account_id)
    session.commit()
    return claimed


def claim(session: Session, worker: str, account_id: int, lease_seconds: float) -> bool:
    """Take one account's lease for ``worker`` if it is free or expired; commits.

    For fetches started outside the dispatcher (a "check now" thread, the CLI): due
    or not, paused or not (the caller decides what may be fetched). One conditional
    UPDATE, atomic on every backend (PostgreSQL re-checks the WHERE clause after
    waiting for a concurrent writer), so of two claimants one wins. Re-claiming
    one's own lease extends it.
    """
    dialect = _bind_dialect(session)
    result = session.execute(
        update(Account)
        .where(
            Account.id == account_id,
            or_(_lease_free(dialect), Account.lease_owner == worker),
        )
        .values(**_leased_to(worker, dialect, lease_seconds))
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return int(result.rowcount) == 1  # type: ignore[attr-defined]


def lease_live_clause(dialect: Dialect) -> ColumnElement[bool]:
    """SQL: someone holds an unexpired lease on the row (by the database's clock)."""
    return and_(Account.lease_owner.is_not(None), Account.lease_expires_at >= db_now(dialect))


def lease_is_live(session: Session, account_id: int) -> bool:
    """True when someone holds an unexpired lease on the account (a fetch is running)."""
    held = session.scalar(select(Account.id).where(
        Account.id == account_id, lease_live_clause(_bind_dialect(session))))
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
