"""The built-in message store's mailboxes: folders, reading, counters, deletion.

What the pages and the services read (``list_messages``, ``iter_raw``...) and the
account-wide upkeep (default folders, recounts, deleting an account's data). The fetch's
durable write side is :mod:`.mailstore`. Functions that change data say so; those
marked "commits" end their own transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any, cast

from sqlalchemy import Integer, Table, case, delete, func, select, update
from sqlalchemy.orm import Session

from .models import (
    Account,
    Base,
    Filter,
    Folder,
    FolderRole,
    Message,
    MessageChunk,
    OutboxItem,
    SendAsAddress,
    Signature,
    Template,
    UidlEntry,
    Vacation,
    VacationReplied,
    VerificationCode,
    value_of,
)

#: The folders every account starts with, in display order.
DEFAULT_FOLDERS: tuple[tuple[str, FolderRole], ...] = (
    ("Inbox", FolderRole.INBOX),
    ("Sent", FolderRole.SENT),
    ("Trash", FolderRole.TRASH),
)


def table_of(model: type[Base]) -> Table:
    """A model's Core table (the hot paths bypass the ORM unit of work)."""
    return cast(Table, model.__table__)


MESSAGES = table_of(Message)
CHUNKS = table_of(MessageChunk)
ACCOUNTS = table_of(Account)


# -- folders -----------------------------------------------------------------------------


def ensure_default_folders(session: Session, account: Account) -> dict[FolderRole, Folder]:
    """Create Inbox, Sent and Trash for the account when missing; flushes, does not commit."""
    if account.id is None:
        session.flush()
    existing: dict[str, Folder] = {
        value_of(f.role): f
        for f in session.scalars(select(Folder).where(Folder.account_id == account.id))
        if f.role != FolderRole.CUSTOM
    }
    out: dict[FolderRole, Folder] = {}
    for name, role in DEFAULT_FOLDERS:
        folder = existing.get(role.value)
        if folder is None:
            folder = Folder(account_id=account.id, name=name, role=role.value)
            session.add(folder)
        out[FolderRole(role)] = folder
    session.flush()
    return out


def folder_id_for(session: Session, account_id: int, role: FolderRole = FolderRole.INBOX) -> int:
    """The id of the account's folder with this role (Inbox by default)."""
    fid = session.scalar(
        select(Folder.id).where(Folder.account_id == account_id, Folder.role == role.value)
        .order_by(Folder.id).limit(1)
    )
    if fid is None:
        raise LookupError(f"account {account_id} has no {role.value} folder")
    return int(fid)


def list_folders(session: Session, account_id: int) -> list[Folder]:
    """The account's folders, default ones first."""
    order = {role.value: i for i, (_n, role) in enumerate(DEFAULT_FOLDERS)}
    folders = list(session.scalars(select(Folder).where(Folder.account_id == account_id)))
    return sorted(folders, key=lambda f: (order.get(value_of(f.role), 99), f.name.lower(), f.id))


def get_folder(session: Session, account_id: int, folder_id: int) -> Folder | None:
    """One folder, only if it belongs to that account."""
    return session.scalar(
        select(Folder).where(Folder.id == folder_id, Folder.account_id == account_id))


def folder_counts(session: Session, account_ids: Collection[int]) -> dict[int, tuple[int, int]]:
    """Messages and unread messages per folder of these accounts: folder id -> (all, unread).

    One grouped query for the whole side pane; a folder without mail is absent.
    """
    if not account_ids:
        return {}
    unread = func.sum(case((MESSAGES.c.is_read.is_(False), 1), else_=0), type_=Integer)
    rows = session.execute(
        select(MESSAGES.c.folder_id, func.count(), unread)
        .where(MESSAGES.c.account_id.in_(list(account_ids)))
        .group_by(MESSAGES.c.folder_id))
    return {int(fid): (int(n), int(u or 0)) for fid, n, u in rows}


# -- reading -----------------------------------------------------------------------------


def list_messages(
    session: Session,
    account_id: int,
    folder_id: int | None = None,
    *,
    limit: int = 50,
    offset: int = 0,
) -> list[Message]:
    """Messages newest first by their sent date (R18), not by when they were fetched.

    ``folder_id=None`` lists every folder of the account.
    """
    stmt = select(Message).where(Message.account_id == account_id)
    if folder_id is not None:
        stmt = stmt.where(Message.folder_id == folder_id)
    stmt = stmt.order_by(Message.sent_at.desc(), Message.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(stmt))


def count_messages(
    session: Session, account_id: int, folder_id: int | None = None, *, unread_only: bool = False
) -> int:
    """How many messages the account (or one of its folders) holds."""
    stmt = select(func.count()).select_from(MESSAGES).where(MESSAGES.c.account_id == account_id)
    if folder_id is not None:
        stmt = stmt.where(MESSAGES.c.folder_id == folder_id)
    if unread_only:
        stmt = stmt.where(MESSAGES.c.is_read.is_(False))
    return int(session.scalar(stmt) or 0)


def get_message(session: Session, account_id: int, message_id: int) -> Message | None:
    """One message, only if it belongs to that account."""
    return session.scalar(
        select(Message).where(Message.id == message_id, Message.account_id == account_id)
    )


def iter_raw(session: Session, message_id: int) -> Iterator[bytes]:
    """The raw message, chunk by chunk, exactly as the server sent it.

    One query per chunk, on purpose: drivers such as psycopg buffer a whole result set
    client-side, which would put a 50 MiB message in memory at once.
    """
    seq = 0
    while True:
        data = session.scalar(
            select(CHUNKS.c.data).where(CHUNKS.c.message_id == message_id, CHUNKS.c.seq == seq)
        )
        if data is None:
            return
        if data:
            yield bytes(data)
        seq += 1


def read_raw(session: Session, message_id: int) -> bytes:
    """The whole raw message (for parsing a message to show it; mind the size)."""
    return b"".join(iter_raw(session, message_id))


def mark_read(session: Session, message_id: int, read: bool = True) -> None:
    """Mark a message read (or unread again); commits."""
    session.execute(update(MESSAGES).where(MESSAGES.c.id == message_id).values(is_read=read))
    session.commit()


# -- changing messages (each restricted to one account; none commits) -------------------


def get_messages(session: Session, account_id: int, message_ids: Collection[int]
                 ) -> list[Message]:
    """The messages among ``message_ids`` that belong to that account (others are left out)."""
    ids = sorted({int(i) for i in message_ids})
    if not ids:
        return []
    return list(session.scalars(
        select(Message).where(Message.account_id == account_id, Message.id.in_(ids))
        .order_by(Message.id)))


def set_read(session: Session, account_id: int, message_ids: Collection[int], read: bool
             ) -> int:
    """Mark the account's messages among ``message_ids`` read or unread; returns how many."""
    result = session.execute(
        update(MESSAGES).where(MESSAGES.c.account_id == account_id,
                               MESSAGES.c.id.in_(list(message_ids))).values(is_read=read))
    return int(getattr(result, "rowcount", 0) or 0)


def move_messages(session: Session, account_id: int, message_ids: Collection[int],
                  folder_id: int) -> int:
    """Put the account's messages among ``message_ids`` into one of its folders.

    Raises LookupError when the folder is not the account's. The counters do not change:
    the bytes stay stored wherever they are filed (Trash counts until it is emptied).
    """
    if get_folder(session, account_id, folder_id) is None:
        raise LookupError(f"account {account_id} has no folder {folder_id}")
    result = session.execute(
        update(MESSAGES).where(MESSAGES.c.account_id == account_id,
                               MESSAGES.c.id.in_(list(message_ids)))
        .values(folder_id=folder_id))
    return int(getattr(result, "rowcount", 0) or 0)


def delete_messages(session: Session, account_id: int, message_ids: Collection[int]
                    ) -> tuple[int, int]:
    """Delete the account's messages among ``message_ids`` from the store for good.

    Their chunks and rows go and the account's counters drop by what they held, in this
    transaction; returns (messages, bytes). The UIDL ledger keeps their ids, so POP does
    not fetch them again.
    """
    ids = [m.id for m in get_messages(session, account_id, message_ids)]
    if not ids:
        return 0, 0
    count, size = session.execute(
        select(func.count(), func.coalesce(func.sum(MESSAGES.c.size), 0))
        .where(MESSAGES.c.id.in_(ids))).one()
    outbox = table_of(OutboxItem)  # a reply still queued keeps its row, without the message
    session.execute(update(outbox).where(outbox.c.message_id.in_(ids)).values(message_id=None))
    session.execute(delete(CHUNKS).where(CHUNKS.c.message_id.in_(ids)))
    session.execute(delete(MESSAGES).where(MESSAGES.c.id.in_(ids)))
    session.execute(
        update(ACCOUNTS).where(ACCOUNTS.c.id == account_id).values(
            message_count=_minus(ACCOUNTS.c.message_count, int(count)),
            bytes_stored=_minus(ACCOUNTS.c.bytes_stored, int(size))))
    return int(count), int(size)


def _minus(column: Any, amount: int) -> Any:
    """``column - amount``, never below 0 (portable: no GREATEST on SQLite)."""
    return case((column > amount, column - amount), else_=0)


def storage_used(session: Session, owner_id: str) -> dict[int, int]:
    """Bytes of stored mail per account of this owner (R19), from the account counters."""
    rows = session.execute(
        select(ACCOUNTS.c.id, ACCOUNTS.c.bytes_stored).where(ACCOUNTS.c.owner_id == owner_id)
    )
    return {int(aid): int(used or 0) for aid, used in rows}


def recount(session: Session, account_id: int) -> tuple[int, int]:
    """Recompute an account's counters from its stored messages; flushes, returns them."""
    count, size = session.execute(
        select(func.count(), func.coalesce(func.sum(MESSAGES.c.size), 0)).where(
            MESSAGES.c.account_id == account_id
        )
    ).one()
    session.execute(
        update(ACCOUNTS).where(ACCOUNTS.c.id == account_id)
        .values(message_count=int(count), bytes_stored=int(size))
    )
    return int(count), int(size)


def delete_account_data(session: Session, account_id: int) -> None:
    """Delete everything stored for an account, then the account row; does not commit.

    Explicit deletes in dependency order, so the result does not depend on the
    backend enforcing ``ON DELETE CASCADE`` (SQLite only does with a PRAGMA).
    """
    msg_ids = select(MESSAGES.c.id).where(MESSAGES.c.account_id == account_id)
    session.execute(delete(CHUNKS).where(CHUNKS.c.message_id.in_(msg_ids)))
    session.execute(delete(MESSAGES).where(MESSAGES.c.account_id == account_id))
    send_as_ids = select(SendAsAddress.id).where(SendAsAddress.account_id == account_id)
    session.execute(delete(VerificationCode).where(VerificationCode.send_as_id.in_(send_as_ids)))
    session.execute(delete(SendAsAddress).where(SendAsAddress.account_id == account_id))
    for model in (OutboxItem, VacationReplied, UidlEntry, Folder, Signature, Template, Filter,
                  Vacation):
        table = table_of(model)
        session.execute(delete(table).where(table.c.account_id == account_id))
    session.execute(delete(ACCOUNTS).where(ACCOUNTS.c.id == account_id))
