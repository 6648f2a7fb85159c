"""Storage against the owner's quota (R19; issue 7 item 5).

The quota is the host's: a callable given to the extension
(``PopAccounts(app, quota=lambda owner_id: 2_000_000_000)``; ``None`` from it means
unlimited) or, without one, ``POPACCOUNTS_QUOTA_BYTES`` (``None``: unlimited). Usage is
the sum of the owner's accounts' ``bytes_stored`` counters, which the store keeps in
the same transaction as the messages they count.

At fetch time (:mod:`.fetching`; the pause itself is :func:`.health.hold_for_quota`):

- before logging in, :func:`paused_for_quota` says whether the owner is still full
  (or the account paused and not yet due for its re-check); if so the account stays
  ``paused_quota`` without any server contact;
- during the fetch the sink is wrapped by :func:`guard_sink`: a message that would
  cross the quota is refused with :class:`~..engine.errors.QuotaExceeded` before any
  of it is staged (the messages staged before it, which fit, are committed first), so
  the engine keeps what was committed and sends no DELE for anything not stored (it
  never reaches DELE or QUIT); the rest waits on the server.

Freeing space (:func:`empty_trash`, :func:`delete_older_than`) makes the owner's
paused accounts due at once when there is room again (:func:`resume_if_room`); the
scheduler's due query needs no quota knowledge (the hook is Python, per owner): a
paused account is claimed at its re-check time and :func:`paused_for_quota` decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, literal, select, update
from sqlalchemy.orm import Session

from ..engine.clock import utcnow
from ..engine.errors import QuotaExceeded
from ..engine.types import RetrievedMessage, Sink
from ..runtime import get_state
from ..storage.mailbox import recount
from ..storage.models import (
    Account,
    AccountStatus,
    Folder,
    FolderRole,
    Message,
    MessageChunk,
    value_of,
)
from . import accounts, health

if TYPE_CHECKING:
    from flask import Flask

#: The host hook's type: owner id -> quota in bytes (None: unlimited).
QuotaHook = Callable[[str], "int | None"]


def quota_for(app: Flask, owner_id: str) -> int | None:
    """The owner's quota in bytes from the host hook or ``POPACCOUNTS_QUOTA_BYTES``."""
    hook: QuotaHook | None = get_state(app).quota
    value = hook(str(owner_id)) if hook is not None else app.config.get(
        "POPACCOUNTS_QUOTA_BYTES")
    return None if value is None else max(0, int(value))


def used_bytes(session: Session, owner_id: str) -> int:
    """Bytes of stored mail over all of the owner's accounts."""
    return int(session.scalar(select(func.coalesce(func.sum(Account.bytes_stored), 0))
                              .where(Account.owner_id == str(owner_id))) or 0)


def space_left(app: Flask, session: Session, owner_id: str) -> int | None:
    """Bytes the owner may still store (None: no quota); 0 or less means full."""
    quota = quota_for(app, owner_id)
    if quota is None:
        return None
    return quota - used_bytes(session, owner_id)


# -- the fetch-time guard ----------------------------------------------------------------


class QuotaGuardSink:
    """A :class:`~..engine.types.Sink` that keeps the owner within the quota, however
    many of the owner's accounts fetch at once (never over it by more than one message).

    Before staging a message that may not fit, the space left is read afresh (what all
    the owner's accounts committed); a message that does not fit is refused. Each
    commit takes the owner's lock first (a transaction-scoped advisory lock on
    PostgreSQL, the write lock on SQLite), so the commits of one owner's fetches are
    serialized, and checks again under it: a group that would cross the quota because
    another account committed meanwhile is rolled back and refused (it stays on the
    server: nothing is lost, no DELE is sent for it).
    """

    def __init__(self, inner: Sink, session: Session, app: Flask, owner_id: str,
                 quota: int) -> None:
        self.inner = inner
        self.session = session
        self.app = app
        self.owner_id = owner_id
        self.quota = quota
        self.left = quota - used_bytes(session, owner_id)
        self._staged = 0

    def add(self, message: RetrievedMessage) -> None:
        if message.size > self.left - self._staged:
            self.left = self.quota - used_bytes(self.session, self.owner_id)  # afresh
        if message.size > self.left - self._staged:
            # What is staged fits: make it durable (with its ledger rows) before refusing,
            # so a large group commit does not throw away mail that fits. The engine's
            # rollback after our error then drops nothing; this message and the rest
            # stay on the server (no DELE: the engine never reaches it).
            self.commit()
            raise QuotaExceeded(detail=f"{message.size} bytes, {self.left} left")
        self.inner.add(message)
        self._staged += message.size

    def commit(self) -> None:
        if self._staged:
            _lock_owner(self.session, self.owner_id)
            used = used_bytes(self.session, self.owner_id)
            if used + self._staged > self.quota:
                staged, self.left = self._staged, self.quota - used
                self.rollback()
                raise QuotaExceeded(detail=f"{staged} bytes staged, {self.left} left")
        self.inner.commit()
        self.left -= self._staged
        self._staged = 0

    def rollback(self) -> None:
        self.inner.rollback()
        self._staged = 0

    def __getattr__(self, name: str) -> object:  # committed_ids etc. of the inner sink
        return getattr(self.inner, name)


def _lock_owner(session: Session, owner_id: str) -> None:
    """Serialize the owner's commits until this transaction ends (see QuotaGuardSink)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(
            func.hashtextextended(literal(f"popaccounts-quota:{owner_id}"), 0))))
        return
    # SQLite (and others): a write that changes nothing takes the database's write lock
    # (a row lock elsewhere) before the usage is read.
    session.execute(update(Account).where(Account.owner_id == str(owner_id))
                    .values(owner_id=Account.owner_id)
                    .execution_options(synchronize_session=False))


def guard_sink(app: Flask, session: Session, owner_id: str, sink: Sink) -> Sink:
    """``sink`` wrapped in a :class:`QuotaGuardSink` when the owner has a quota."""
    quota = quota_for(app, owner_id)
    if quota is None:
        return sink
    guarded = QuotaGuardSink(sink, session, app, owner_id, quota)
    session.commit()  # end the read transaction: the fetch's writes start fresh
    return guarded


def paused_for_quota(app: Flask, session: Session, account: Account) -> bool:
    """Whether the account must not log in now for the owner's quota; commits a pause.

    - The owner is full (no space left): the account is paused (or stays paused) and
      re-checked after its interval.
    - An account paused because the next message did not fit stays paused until its
      re-check time (or until the freeing tools resume it at once); after that, with
      some space left, one fetch is tried: it stores what fits and pauses again.
    """
    left = space_left(app, session, account.owner_id)
    now = get_state(app).clock()
    if left is not None and left <= 0:
        health.hold_for_quota(app, session, account, now=now)
        return True
    if value_of(account.status) != AccountStatus.PAUSED_QUOTA.value or left is None:
        return False
    due = account.next_due_at
    return due is not None and now < due


def resume_if_room(app: Flask, session: Session, owner_id: str) -> list[int]:
    """When the owner has room again, make their quota-paused accounts due now.

    Returns the ids resumed; commits. The status becomes OK again only with the next
    successful fetch; until then the card says fetching resumes shortly.
    """
    left = space_left(app, session, owner_id)
    if left is not None and left <= 0:
        return []
    ids = list(session.scalars(select(Account.id).where(
        Account.owner_id == str(owner_id),
        Account.status == AccountStatus.PAUSED_QUOTA.value)))
    if ids:
        session.execute(update(Account).where(Account.id.in_(ids))
                        .values(status=AccountStatus.OK.value, next_due_at=get_state(app).clock(),
                                last_error_code=None)
                        .execution_options(synchronize_session=False))
        session.commit()
        session.expire_all()
    return ids


# -- usage and tools for the Storage page --------------------------------------------------


@dataclass
class AccountUsage:
    account: Account
    bytes: int
    messages: int
    trash_bytes: int
    trash_messages: int
    paused: bool


@dataclass
class Usage:
    accounts: list[AccountUsage] = field(default_factory=list)
    total: int = 0
    quota: int | None = None

    @property
    def free(self) -> int | None:
        return None if self.quota is None else max(0, self.quota - self.total)

    @property
    def percent(self) -> int | None:
        if not self.quota:
            return None
        return min(100, round(100 * self.total / self.quota))

    @property
    def full(self) -> bool:
        return self.quota is not None and self.total >= self.quota


def usage(app: Flask, session: Session, owner_id: str) -> Usage:
    """Usage per account (with its Trash) and in total, against the quota."""
    trash = dict(
        (int(aid), (int(n), int(b))) for aid, n, b in session.execute(
            select(Message.account_id, func.count(), func.coalesce(func.sum(Message.size), 0))
            .join(Folder, Folder.id == Message.folder_id)
            .join(Account, Account.id == Message.account_id)
            .where(Account.owner_id == str(owner_id), Folder.role == FolderRole.TRASH.value)
            .group_by(Message.account_id)))
    out = Usage(quota=quota_for(app, owner_id))
    for account in accounts.list_accounts(session, owner_id):
        tn, tb = trash.get(account.id, (0, 0))
        out.accounts.append(AccountUsage(
            account=account, bytes=int(account.bytes_stored or 0),
            messages=int(account.message_count or 0), trash_bytes=tb, trash_messages=tn,
            paused=value_of(account.status) == AccountStatus.PAUSED_QUOTA.value))
        out.total += int(account.bytes_stored or 0)
    return out


def _delete_messages(session: Session, account: Account, *where: object) -> tuple[int, int]:
    ids = select(Message.id).where(Message.account_id == account.id, *where)  # type: ignore[arg-type]
    count, size = session.execute(
        select(func.count(), func.coalesce(func.sum(Message.size), 0))
        .where(Message.account_id == account.id, *where)).one()  # type: ignore[arg-type]
    session.execute(delete(MessageChunk).where(MessageChunk.message_id.in_(ids)))
    session.execute(delete(Message).where(Message.account_id == account.id, *where)  # type: ignore[arg-type]
                    .execution_options(synchronize_session=False))
    recount(session, account.id)
    return int(count), int(size)


def empty_trash(app: Flask, session: Session, account: Account) -> tuple[int, int]:
    """Delete every message in the account's Trash from the store; returns (count, bytes).

    Only the stored copies go (the ledger still knows their UIDLs, so nothing is fetched
    again); commits, then resumes the owner's paused accounts if there is room.
    """
    trash_ids = select(Folder.id).where(Folder.account_id == account.id,
                                        Folder.role == FolderRole.TRASH.value)
    result = _delete_messages(session, account, Message.folder_id.in_(trash_ids))
    session.commit()
    resume_if_room(app, session, account.owner_id)
    return result


def older_than(session: Session, account: Account, days: int,
               *, now: datetime | None = None) -> tuple[int, int]:
    """How many messages (and bytes) of the account were sent more than ``days`` ago."""
    cutoff = (now or utcnow()) - timedelta(days=int(days))
    count, size = session.execute(
        select(func.count(), func.coalesce(func.sum(Message.size), 0))
        .where(Message.account_id == account.id, Message.sent_at < cutoff)).one()
    return int(count), int(size)


def delete_older_than(app: Flask, session: Session, account: Account, days: int
                      ) -> tuple[int, int]:
    """Delete the account's stored messages sent more than ``days`` ago, in every folder.

    The page asks for confirmation first (with :func:`older_than`'s numbers). Only the
    stored copies go; the ledger keeps their UIDLs, so nothing is fetched again. Commits,
    then resumes the owner's paused accounts if there is room.
    """
    if int(days) < 1:
        raise ValueError("days must be at least 1")
    cutoff = get_state(app).clock() - timedelta(days=int(days))
    result = _delete_messages(session, account, Message.sent_at < cutoff)
    session.commit()
    resume_if_room(app, session, account.owner_id)
    return result
