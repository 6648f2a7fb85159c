"""The built-in message store: SqlLedger / SqlSink and the read side."""

from __future__ import annotations

import io
import os
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from flask_popaccounts.engine.types import MessageMeta, RetrievedMessage
from flask_popaccounts.storage import mailbox
from flask_popaccounts.storage import mailstore as store
from flask_popaccounts.storage.models import Account, FolderRole, Message, MessageChunk, UidlEntry

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)


def make_account(session, owner="u1", email="a@example.org") -> Account:
    acc = Account(owner_id=owner, email=email, name="A", send_from=email, pop_host="127.0.0.1",
                  pop_port=995, pop_security="ssl", pop_username="alice")
    session.add(acc)
    session.flush()
    mailbox.ensure_default_folders(session, acc)
    session.commit()
    return acc


def msg(uidl: str, raw: bytes, sent_at: datetime, subject: str = "") -> RetrievedMessage:
    meta = MessageMeta(sent_at=sent_at, sent_at_source="date", from_addr="x@example.org",
                       to_addrs="a@example.org", subject=subject, message_id=f"<{uidl}@x>",
                       size=len(raw))
    return RetrievedMessage(uidl=uidl, size=len(raw), spool=io.BytesIO(raw), meta=meta)


def test_default_folders_idempotent(session):
    acc = make_account(session)
    again = mailbox.ensure_default_folders(session, acc)
    assert set(again) == {FolderRole.INBOX, FolderRole.SENT, FolderRole.TRASH}
    assert [f.name for f in mailbox.list_folders(session, acc.id)] == ["Inbox", "Sent", "Trash"]


def test_sink_stores_unread_sorted_by_sent_date(session):
    acc = make_account(session)
    inbox = mailbox.folder_id_for(session, acc.id)
    sink = store.SqlSink(session, acc, inbox)
    # fetched in this order, sent in another
    sink.add(msg("u1", b"Subject: one\r\n\r\n1\r\n", T0, "one"))
    sink.add(msg("u2", b"Subject: two\r\n\r\n2\r\n", T0 - timedelta(days=2), "two"))
    sink.add(msg("u3", b"Subject: three\r\n\r\n3\r\n", T0 + timedelta(hours=1), "ثلاثة"))
    sink.commit()
    listed = mailbox.list_messages(session, acc.id, inbox)
    assert [m.subject for m in listed] == ["ثلاثة", "one", "two"]
    assert all(not m.is_read for m in listed)
    assert listed[0].sent_at == T0 + timedelta(hours=1)
    assert mailbox.count_messages(session, acc.id, unread_only=True) == 3
    assert [m.subject for m in mailbox.list_messages(session, acc.id, limit=1, offset=1)] == ["one"]
    mailbox.mark_read(session, listed[0].id)
    assert mailbox.count_messages(session, acc.id, unread_only=True) == 2
    assert sink.committed_ids and len(sink.committed_ids) == 3


def test_raw_bytes_chunked_and_identical(session):
    acc = make_account(session)
    inbox = mailbox.folder_id_for(session, acc.id)
    raw = b"Subject: big\r\n\r\n" + os.urandom(store.CHUNK_SIZE * 2 + 12345)
    sink = store.SqlSink(session, acc.id, inbox)
    sink.add(msg("big", raw, T0))
    sink.add(msg("empty", b"", T0))
    sink.commit()
    big = session.scalar(select(Message).where(Message.uidl == "big"))
    chunks = list(mailbox.iter_raw(session, big.id))
    assert len(chunks) == 3 and all(len(c) <= store.CHUNK_SIZE for c in chunks)
    assert mailbox.read_raw(session, big.id) == raw
    empty = session.scalar(select(Message).where(Message.uidl == "empty"))
    assert mailbox.read_raw(session, empty.id) == b""


def test_counters_ledger_and_rollback(session):
    acc = make_account(session)
    inbox = mailbox.folder_id_for(session, acc.id)
    sink = store.SqlSink(session, acc.id, inbox)
    sink.add(msg("a", b"x" * 100, T0))
    sink.add(msg("b", b"y" * 50, T0))
    sink.commit()
    sink.add(msg("c", b"z" * 10, T0))
    sink.rollback()  # staged, never committed: no message, no ledger row, no counters
    session.refresh(acc)
    assert (acc.message_count, acc.bytes_stored, acc.fetched_total) == (2, 150, 2)
    assert session.scalar(select(func.count()).select_from(MessageChunk)) == 2
    ledger = store.SqlLedger(session, acc.id)
    entries = ledger.entries()
    assert set(entries) == {"a", "b"}
    assert all(e.on_server and e.stored_at.tzinfo is not None for e in entries.values())
    ledger.mark_gone(["a"])
    assert not store.SqlLedger(session, acc.id).entries()["a"].on_server
    assert mailbox.storage_used(session, "u1") == {acc.id: 150}
    assert mailbox.recount(session, acc.id) == (2, 150)


def test_ledger_row_makes_duplicates_impossible(session):
    import pytest
    from sqlalchemy.exc import IntegrityError

    acc = make_account(session)
    inbox = mailbox.folder_id_for(session, acc.id)
    sink = store.SqlSink(session, acc.id, inbox)
    sink.add(msg("dup", b"1", T0))
    sink.commit()
    sink.add(msg("dup", b"1", T0))
    with pytest.raises(IntegrityError):
        sink.commit()
    assert mailbox.count_messages(session, acc.id) == 1
    assert session.scalar(select(func.count()).select_from(UidlEntry)) == 1


def test_delete_account_data_removes_everything(session):
    acc = make_account(session)
    other = make_account(session, email="b@example.org")
    for a in (acc, other):
        sink = store.SqlSink(session, a.id, mailbox.folder_id_for(session, a.id))
        sink.add(msg("m", b"raw", T0))
        sink.commit()
    mailbox.delete_account_data(session, acc.id)
    session.commit()
    assert session.scalar(select(func.count()).select_from(Message)) == 1
    assert session.scalar(select(func.count()).select_from(MessageChunk)) == 1
    assert session.scalar(select(func.count()).select_from(UidlEntry)) == 1
    assert session.get(Account, other.id) is not None


def test_sink_speed_2000_messages(session):
    """2,000 x 20 KB through the sink on SQLite, group commit every 256 (the engine default)."""
    acc = make_account(session)
    inbox = mailbox.folder_id_for(session, acc.id)
    body = b"Subject: s\r\n\r\n" + b"0123456789abcdef\r\n" * 1100
    sink = store.SqlSink(session, acc.id, inbox)
    t = time.perf_counter()
    for i in range(2000):
        sink.add(msg(f"uid{i:05d}", body, T0 + timedelta(seconds=i)))
        if i % 256 == 255:
            sink.commit()
    sink.commit()
    elapsed = time.perf_counter() - t
    assert mailbox.count_messages(session, acc.id) == 2000
    print(f"\nSqlSink: 2000 x {len(body)} B in {elapsed:.2f} s")
    assert elapsed < 10


def test_sink_batches_small_messages_and_streams_large_ones_in_order(session, monkeypatch):
    """Small messages are buffered and inserted in batches, a large one streamed; the ids
    follow the fetch order, every message keeps its bytes, outbox rows their message."""
    monkeypatch.setattr(store, "BATCH_BYTES", 3000)  # write the buffer early, too

    class Forward:
        def classify(self, session, message):
            if message.uidl.endswith("f"):
                return store.Placement(is_flagged=True, outbox=[
                    {"kind": "forward", "recipient": f"{message.uidl}@example.org",
                     "rule_id": None}])
            return None

        def committed(self):
            pass

        def rolled_back(self):
            pass

    acc = make_account(session)
    inbox = mailbox.folder_id_for(session, acc.id)
    raws = {
        "s1": b"Subject: 1\r\n\r\n" + b"a" * 1000,
        "s2f": b"Subject: 2\r\n\r\n" + b"b" * 2500,
        "big": b"Subject: big\r\n\r\n" + os.urandom(store.CHUNK_SIZE * 2 + 7),
        "s3": b"Subject: 3\r\n\r\n" + b"c" * 10,
        "one": b"x" * store.CHUNK_SIZE,  # exactly one chunk: still the batch path
        "s4f": b"Subject: 4\r\n\r\n",
        "empty": b"",
    }
    sink = store.SqlSink(session, acc.id, inbox, classifier=Forward())
    for uidl, raw in raws.items():
        sink.add(msg(uidl, raw, T0))
    sink.add(msg("gone", b"Subject: gone\r\n\r\n", T0))
    sink.rollback()  # drops everything staged, buffered or already inserted
    assert mailbox.count_messages(session, acc.id) == 0
    for uidl, raw in raws.items():
        sink.add(msg(uidl, raw, T0))
    sink.commit()
    ids = sink.committed_ids
    assert len(ids) == len(raws) and ids == sorted(ids)
    by_id = {m.id: m for m in session.scalars(select(Message))}
    assert [by_id[i].uidl for i in ids] == list(raws)
    for i in ids:
        assert mailbox.read_raw(session, i) == raws[by_id[i].uidl]
    assert [by_id[i].is_flagged for i in ids] == [u.endswith("f") for u in raws]
    from flask_popaccounts.storage.models import OutboxItem

    outbox = {o.recipient: o.message_id for o in session.scalars(select(OutboxItem))}
    assert outbox == {f"{by_id[i].uidl}@example.org": i for i in ids
                      if by_id[i].uidl.endswith("f")}
    assert set(store.SqlLedger(session, acc.id).entries()) == set(raws)
    session.refresh(acc)
    assert acc.message_count == len(raws)
    assert acc.bytes_stored == sum(len(r) for r in raws.values())
