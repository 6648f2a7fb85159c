"""Claiming due accounts with a lease, so one account is never fetched twice at once.

A claim is a lease on the account row (``lease_owner``, ``lease_expires_at``). It is
taken with one atomic statement, so any number of threads, processes or machines
sharing the database agree on who fetches what:

- PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` picks due rows that no other
  transaction is looking at, and the lease is written in the same transaction.
- Other databases (SQLite): a conditional ``UPDATE ... WHERE lease is free`` per
  candidate; the row count says whether we won.

A process that dies stops renewing its leases; they expire and another process takes
the account over. Even if a lease were lost while a fetch still runs, the ledger's
primary key (account, UIDL) makes a second copy of a message impossible: the
overlapping commit fails and is rolled back.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Collection
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from ..models import Account, AccountStatus

#: Statuses whose accounts the scheduler leaves alone until the user acts.
PAUSED_STATUSES = (
    AccountStatus.NEEDS_PASSWORD.value,
    AccountStatus.NEEDS_REAUTH.value,
    AccountStatus.NEEDS_ATTENTION.value,
    AccountStatus.DISABLED.value,
)


def new_worker_id() -> str:
    """Identifies this process (and this scheduler instance) in lease rows."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _due_clause(now: datetime):  # type: ignore[no-untyped-def]
    return and_(
        Account.enabled.is_(True),
        Account.status.not_in(PAUSED_STATUSES),
        or_(Account.next_due_at.is_(None), Account.next_due_at <= now),
        _lease_free(now),
    )


def _lease_free(now: datetime):  # type: ignore[no-untyped-def]
    return or_(Account.lease_owner.is_(None), Account.lease_expires_at < now)


def claim_due(session: Session, worker: str, limit: int, lease_seconds: int,
              *, now: datetime | None = None) -> list[int]:
    """Claim up to ``limit`` due accounts for ``worker``; returns their ids (committed)."""
    if limit <= 0:
        return []
    now = now or _now()
    expires = now + timedelta(seconds=lease_seconds)
    due = (
        select(Account.id)
        .where(_due_clause(now))
        .order_by(Account.next_due_at.is_(None).desc(), Account.next_due_at, Account.id)
        .limit(limit)
    )
    claimed: list[int] = []
    if session.get_bind().dialect.name == "postgresql":
        ids = list(session.scalars(due.with_for_update(skip_locked=True)))
        if ids:
            session.execute(
                update(Account)
                .where(Account.id.in_(ids))
                .values(lease_owner=worker, lease_expires_at=expires)
            )
        claimed = ids
    else:
        candidates = session.scalars(due).all()
        # End the read transaction first: on SQLite (WAL) a reader that later writes
        # fails at once instead of waiting; each UPDATE below starts a fresh one.
        session.commit()
        for account_id in candidates:
            result = session.execute(
                update(Account)
                .where(Account.id == account_id, _due_clause(now))
                .values(lease_owner=worker, lease_expires_at=expires)
                .execution_options(synchronize_session=False)
            )
            session.commit()
            if result.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(account_id)
    session.commit()
    return claimed


def renew(session: Session, worker: str, account_ids: Collection[int], lease_seconds: int,
          *, now: datetime | None = None) -> int:
    """Extend this worker's leases on accounts still being fetched; returns how many."""
    if not account_ids:
        return 0
    now = now or _now()
    result = session.execute(
        update(Account)
        .where(Account.id.in_(list(account_ids)), Account.lease_owner == worker)
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


def make_due_now(session: Session, account_id: int) -> None:
    """"Check now": the account becomes due at once (the claim still guards it)."""
    session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(next_due_at=_now())
        .execution_options(synchronize_session=False)
    )
    session.commit()


def release(session: Session, worker: str, account_id: int) -> None:
    """Give the lease back (only if it is still ours)."""
    session.execute(
        update(Account)
        .where(Account.id == account_id, Account.lease_owner == worker)
        .values(lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()
