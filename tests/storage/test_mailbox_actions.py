"""storage.mailbox's message actions and services.reading's folders: each restricted to
one account, the counters exact (Trash counts until deleted for good), the bytes gone,
a quota-paused owner resumed when deleting for good frees room."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from flask_popaccounts.services import reading
from flask_popaccounts.storage import mailbox
from flask_popaccounts.storage import mailstore as store
from flask_popaccounts.storage.models import (
    Account,
    AccountStatus,
    Folder,
    FolderRole,
    Message,
    MessageChunk,
    OutboxItem,
)
from tests.storage.test_store import T0, make_account, msg


def fill(session, acc: Account, n: int = 3, folder_id: int | None = None) -> list[int]:
    sink = store.SqlSink(session, acc, folder_id or mailbox.folder_id_for(session, acc.id))
    for i in range(n):
        sink.add(msg(f"{acc.id}-{folder_id}-{i}", f"Subject: m{i}\r\n\r\n{'x' * (10 * i)}\r\n"
                     .encode(), T0 + timedelta(hours=i), f"m{i}"))
    sink.commit()
    return list(sink.committed_ids)


def counters(session, acc: Account) -> tuple[int, int]:
    session.expire_all()
    row = session.get(Account, acc.id)
    assert row is not None
    return row.message_count, row.bytes_stored


def chunks(session, ids: list[int]) -> int:
    return int(session.scalar(select(func.count()).select_from(MessageChunk)
                              .where(MessageChunk.message_id.in_(ids))) or 0)


def test_folders_with_their_counts(session) -> None:
    acc = make_account(session)
    bills = Folder(account_id=acc.id, name="Bills", role=FolderRole.CUSTOM.value)
    archive = Folder(account_id=acc.id, name="archive", role=FolderRole.CUSTOM.value)
    session.add_all([bills, archive])
    session.commit()
    ids = fill(session, acc, 3)
    fill(session, acc, 2, bills.id)
    mailbox.mark_read(session, ids[0])
    listed = reading.folders(session, [acc.id])[acc.id]
    assert [(f.name, f.role, f.total, f.unread) for f in listed] == [
        ("Inbox", "inbox", 3, 2), ("Sent", "sent", 0, 0), ("Trash", "trash", 0, 0),
        ("archive", "custom", 0, 0), ("Bills", "custom", 2, 2)]
    assert reading.folder(session, acc.id).role == "inbox"  # type: ignore[union-attr]
    other = make_account(session, owner="u2", email="b@example.org")
    assert reading.folder(session, other.id, bills.id) is None
    assert reading.folders(session, []) == {}


def test_actions_touch_only_the_accounts_messages(session) -> None:
    acc = make_account(session)
    other = make_account(session, owner="u2", email="b@example.org")
    mine, theirs = fill(session, acc, 2), fill(session, other, 1)
    assert reading.mark(session, acc.id, [*mine, *theirs], read=True) == 2
    assert session.scalar(select(Message.is_read).where(Message.id == theirs[0])) is False
    assert [m.id for m in reading.messages(session, acc.id, [*mine, *theirs])] == mine
    trash_of_other = mailbox.folder_id_for(session, other.id, FolderRole.TRASH)
    with pytest.raises(LookupError):
        reading.move(session, acc.id, mine, trash_of_other)
    session.rollback()
    sent = mailbox.folder_id_for(session, acc.id, FolderRole.SENT)
    assert reading.move(session, acc.id, [*mine, *theirs], sent) == 2
    assert session.scalar(select(Message.folder_id).where(Message.id == theirs[0])) != sent
    assert mailbox.delete_messages(session, acc.id, theirs) == (0, 0)
    session.rollback()
    assert chunks(session, theirs) == 1


def test_delete_to_trash_then_for_good_keeps_the_counters_exact(app, session) -> None:
    acc = make_account(session)
    ids = fill(session, acc, 3)
    before = counters(session, acc)
    assert before == mailbox.recount(session, acc.id)
    session.rollback()

    done = reading.delete_messages(app, session, acc, ids[:2])
    assert (done.trashed, done.deleted, done.bytes_freed) == (2, 0, 0)
    assert counters(session, acc) == before  # Trash counts until it is emptied
    assert {m.id for m in reading.in_trash(session, acc.id, ids)} == set(ids[:2])
    # a reply queued for one of them keeps its row, without the message
    session.add(OutboxItem(account_id=acc.id, message_id=ids[0], kind="vacation",
                           recipient="x@example.org", created_at=T0, state="pending"))
    session.commit()

    size = sum(m.size for m in reading.messages(session, acc.id, ids[:2]))
    done = reading.delete_messages(app, session, acc, ids)  # two in Trash, one not
    assert (done.trashed, done.deleted, done.bytes_freed) == (1, 2, size)
    assert chunks(session, ids[:2]) == 0 and chunks(session, ids[2:]) == 1
    assert counters(session, acc) == (before[0] - 2, before[1] - size)
    assert counters(session, acc) == mailbox.recount(session, acc.id)
    session.rollback()
    assert session.scalar(select(OutboxItem.message_id)) is None


def test_deleting_for_good_resumes_an_owner_paused_for_quota(app, session) -> None:
    acc = make_account(session)
    ids = fill(session, acc, 2)
    used = counters(session, acc)[1]
    app.config["POPACCOUNTS_QUOTA_BYTES"] = used
    paused = make_account(session, email="c@example.org")
    paused.status = AccountStatus.PAUSED_QUOTA.value  # type: ignore[assignment]
    session.commit()
    reading.delete_messages(app, session, acc, ids[:1])  # to Trash: still full
    session.expire_all()
    assert session.get(Account, paused.id).status == AccountStatus.PAUSED_QUOTA.value  # type: ignore[union-attr]
    reading.delete_messages(app, session, acc, ids[:1])  # for good: room again
    session.expire_all()
    assert session.get(Account, paused.id).status == AccountStatus.OK.value  # type: ignore[union-attr]
