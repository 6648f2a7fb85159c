"""The built-in message store: the storage side of the engine's Ledger and Sink.

:class:`SqlLedger` and :class:`SqlSink` implement the engine's Protocols
(:mod:`flask_popaccounts.engine.types`) over the ``popaccounts_*`` tables; the
services build one pair per fetch session, on a session of their own.

The sink's hot path uses Core inserts (no ORM unit of work). A message that fits in
one :class:`~.models.MessageChunk` (at most :data:`CHUNK_SIZE` bytes) is buffered and
written with the others in a few ``executemany`` batches (message rows with ``INSERT ..
RETURNING`` in parameter order, then chunks, outbox and ledger rows); the buffer is
written early once it holds :data:`BATCH_BYTES`. A larger message is streamed into
chunk rows, so no message is ever held whole in memory. Everything ``add()`` stages
(the message row, its chunks, its ledger row and the account's counters) becomes
durable together in ``commit()``; the engine decides how often that is (group commit).

The read side (``list_messages``, ``iter_raw``...) and the folders are
:mod:`.mailbox`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.orm import Session

from ..engine.clock import Clock, utcnow
from ..engine.types import LedgerEntry, MessageMeta, RetrievedMessage
from .mailbox import ACCOUNTS, CHUNKS, MESSAGES, folder_id_for, table_of
from .models import Account, FolderRole, OutboxItem, UidlEntry
from .retrieval import record_seen

#: Raw message bytes are stored in chunks of at most this many bytes.
CHUNK_SIZE = 1024 * 1024

_MESSAGE = MESSAGES
_CHUNK = CHUNKS
_UIDL = table_of(UidlEntry)
_ACCOUNT = ACCOUNTS

_INSERT_MESSAGE = insert(_MESSAGE)
#: Many message rows at once, their ids returned in the order of the parameters
#: (SQLAlchemy's "insertmanyvalues": batched on SQLite and PostgreSQL, row by row where
#: a backend cannot guarantee the order).
_INSERT_MESSAGES = insert(_MESSAGE).returning(_MESSAGE.c.id, sort_by_parameter_order=True)
_INSERT_CHUNK = insert(_CHUNK)
_INSERT_UIDL = insert(_UIDL)
_OUTBOX = table_of(OutboxItem)
_INSERT_OUTBOX = insert(_OUTBOX)

#: Buffered raw bytes of small messages above which the sink writes them (uncommitted).
BATCH_BYTES = 8 * 1024 * 1024

#: Bound on the number of parameters in one ``IN (...)`` list (SQLite's old limit is 999).
_IN_BATCH = 500


def _insert_message(conn: Connection, row: Mapping[str, object]) -> int:
    """Insert one message row; its id."""
    pk = conn.execute(_INSERT_MESSAGE, row).inserted_primary_key
    assert pk is not None
    return int(pk[0])


def _insert_messages_sqlite(conn: Connection, rows: list[dict[str, object]]) -> list[int]:
    """Insert message rows in one ``executemany``; their ids, in order (SQLite).

    SQLite does not promise the order of ``RETURNING`` rows (SQLAlchemy would then insert
    row by row), so the ids are chosen here: the first row is inserted alone, which takes
    the database's single write lock for the rest of this transaction; nobody else can
    insert until we commit or roll back, so the ids above the table's largest are ours.
    """
    first = _insert_message(conn, rows[0])
    top = int(conn.execute(select(func.max(_MESSAGE.c.id))).scalar_one())
    ids = [first, *range(top + 1, top + len(rows))]
    conn.execute(_INSERT_MESSAGE, [{**row, "id": mid}
                                   for mid, row in zip(ids[1:], rows[1:], strict=True)])
    return ids


class SqlLedger:
    """The engine's :class:`~.engine.types.Ledger` over ``popaccounts_uidl``."""

    def __init__(self, session: Session, account_id: int) -> None:
        self.session = session
        self.account_id = account_id

    def entries(self) -> Mapping[str, LedgerEntry]:
        """Every UIDL stored for the account, in one query."""
        rows = self.session.execute(
            select(_UIDL.c.uidl, _UIDL.c.stored_at, _UIDL.c.on_server, _UIDL.c.seen_only).where(
                _UIDL.c.account_id == self.account_id
            )
        )
        return {uidl: LedgerEntry(stored_at=at, on_server=bool(on), seen_only=bool(seen))
                for uidl, at, on, seen in rows}

    def mark_gone(self, uidls: Collection[str]) -> None:
        """Record that these UIDLs are no longer on the server; commits (durable).

        Committing here also makes durable anything a sink on the same session has
        staged; that is safe, because each staged message carries its own ledger row.
        """
        todo = list(uidls)
        for i in range(0, len(todo), _IN_BATCH):
            self.session.execute(
                update(_UIDL)
                .where(_UIDL.c.account_id == self.account_id,
                       _UIDL.c.uidl.in_(todo[i : i + _IN_BATCH]))
                .values(on_server=False)
            )
        self.session.commit()

    def mark_seen(self, uidls: Collection[str]) -> None:
        """The first import "from now on" (:mod:`.retrieval`); commits."""
        record_seen(self.session, self.account_id, uidls, utcnow())


@dataclass
class Placement:
    """Where and how one fetched message is stored, decided before its row is inserted.

    ``outbox``: mail to send because of this message (forward, vacation reply), as
    :class:`~.models.OutboxItem` values without ``account_id``/``message_id``; the sink
    inserts them in the message's own transaction, so a crash leaves both or neither.
    """

    folder_id: int | None = None  #: None: the sink's Inbox
    is_read: bool = False
    is_flagged: bool = False
    outbox: list[dict[str, object]] = field(default_factory=list)
    #: a scanner rejected it (the reason): not stored, only its ledger row (seen)
    rejected: str | None = None


class Classifier(Protocol):
    """Decides each message's :class:`Placement` inside the sink's transaction (filters)."""

    def classify(self, session: Session, message: RetrievedMessage) -> Placement | None:
        """The placement (None: Inbox, unread); may write rows in ``session``'s transaction.

        Must leave ``message.spool`` at position 0.
        """
        ...

    def committed(self) -> None:
        """What was classified since the last call is durable now."""
        ...

    def rolled_back(self) -> None:
        """What was classified since the last commit is gone."""
        ...


class SqlSink:
    """The engine's :class:`~.engine.types.Sink`: stores messages into a folder.

    ``on_commit`` (optional) is called after each successful commit with the ids of
    the messages that commit made durable (the services fire signals from it).
    ``classifier`` decides each message's folder, flags and outgoing side effects before
    it is inserted (the services pass the account's filters; None: Inbox, unread).
    ``clock`` stamps ``fetched_at`` and the ledger's ``stored_at``. ``mark_read``: the
    account's "mark as read on arrival", for every message stored (R18: unread otherwise).
    """

    def __init__(
        self,
        session: Session,
        account: Account | int,
        inbox_folder_id: int,
        *,
        on_commit: Callable[[list[int]], None] | None = None,
        classifier: Classifier | None = None,
        clock: Clock = utcnow,
        mark_read: bool = False,
    ) -> None:
        self.mark_read = mark_read
        self.session = session
        self.account_id = account if isinstance(account, int) else account.id
        self.folder_id = inbox_folder_id
        self.on_commit = on_commit
        self.classifier = classifier
        self.clock = clock
        self._staged_ids: list[int] = []
        self._staged_bytes = 0
        self._uidl_rows: list[dict[str, object]] = []
        #: small messages not yet inserted: (message row, raw bytes, outbox rows)
        self._pending: list[tuple[dict[str, object], bytes, list[dict[str, object]]]] = []
        self._pending_bytes = 0
        self.committed_ids: list[int] = []  #: every message id made durable by this sink

    def add(self, message: RetrievedMessage) -> None:
        """Stage one message: metadata row, raw chunks, ledger row (not yet durable)."""
        meta = message.meta
        now = self.clock()
        placement = (self.classifier.classify(self.session, message)
                     if self.classifier is not None else None)
        row: dict[str, object] = {
            "account_id": self.account_id,
            "folder_id": (placement.folder_id if placement is not None
                          and placement.folder_id is not None else self.folder_id),
            "uidl": message.uidl,
            "sent_at": meta.sent_at,
            "sent_at_source": meta.sent_at_source,
            "fetched_at": now,
            "from_addr": meta.from_addr,
            "to_addrs": meta.to_addrs,
            "subject": meta.subject,
            "message_id": meta.message_id,
            "size": message.size,
            # R18: every retrieved message arrives unread (unless a filter, or the account's
            # "mark as read on arrival", says otherwise)
            "is_read": self.mark_read or (placement is not None and placement.is_read),
            "is_flagged": placement is not None and placement.is_flagged,
        }
        # Ledger rows go in one executemany at commit time, still in this transaction.
        self._uidl_rows.append({"account_id": self.account_id, "uidl": message.uidl,
                                "stored_at": now, "on_server": True})
        if placement is not None and placement.rejected is not None:
            return  # seen, not stored: never fetched again (deliveries/sql.py)
        outbox = [{**item, "account_id": self.account_id, "created_at": now,
                   "state": "pending", "attempts": 0}
                  for item in (placement.outbox if placement is not None else ())]
        spool = message.spool
        first = spool.read(CHUNK_SIZE)
        second = spool.read(CHUNK_SIZE) if len(first) >= CHUNK_SIZE else b""
        if not second:
            # One chunk (possibly empty: reads stay uniform): buffered, written in a batch.
            self._pending.append((row, first, outbox))
            self._pending_bytes += len(first)
            self._staged_bytes += len(first)
            if self._pending_bytes >= BATCH_BYTES:
                self._write_pending()
            return
        # A large message: what is buffered goes first (ids stay in fetch order), then
        # this one is streamed chunk by chunk.
        self._write_pending()
        conn = self.session.connection()
        message_id = _insert_message(conn, row)
        self._insert_outbox(conn, [(message_id, outbox)])
        seq = 0
        size = 0
        data = first
        while data:
            conn.execute(_INSERT_CHUNK, {"message_id": message_id, "seq": seq, "data": data})
            seq += 1
            size += len(data)
            data, second = second, b""
            if not data:
                data = spool.read(CHUNK_SIZE)
        self._staged_ids.append(message_id)
        self._staged_bytes += size

    @staticmethod
    def _insert_outbox(conn: Connection,
                       items: list[tuple[int, list[dict[str, object]]]]) -> None:
        rows = [{**row, "message_id": message_id}
                for message_id, outbox in items for row in outbox]
        if rows:
            conn.execute(_INSERT_OUTBOX, rows)

    def _write_pending(self) -> None:
        """Insert the buffered small messages (rows, chunks, outbox rows); no commit."""
        pending = self._pending
        if not pending:
            return
        conn = self.session.connection()
        rows = [row for row, _d, _o in pending]
        dialect = conn.dialect
        if len(rows) > 1 and dialect.name == "sqlite":
            ids = _insert_messages_sqlite(conn, rows)
        elif len(rows) > 1 and dialect.insert_executemany_returning_sort_by_parameter_order:
            ids = [int(i) for i in conn.execute(_INSERT_MESSAGES, rows).scalars()]
        else:
            ids = [_insert_message(conn, row) for row in rows]
        if len(ids) != len(pending):  # pragma: no cover - the driver broke its contract
            raise RuntimeError(f"{len(pending)} messages inserted, {len(ids)} ids returned")
        conn.execute(_INSERT_CHUNK, [{"message_id": mid, "seq": 0, "data": data}
                                     for mid, (_r, data, _o) in zip(ids, pending, strict=True)])
        self._insert_outbox(conn, [(mid, outbox)
                                   for mid, (_r, _d, outbox) in zip(ids, pending, strict=True)
                                   if outbox])
        self._pending = []
        self._pending_bytes = 0
        self._staged_ids.extend(ids)

    def _flush(self) -> None:
        self._write_pending()
        if self._uidl_rows:
            self.session.connection().execute(_INSERT_UIDL, self._uidl_rows)
        if self._staged_ids:
            n = len(self._staged_ids)
            self.session.execute(
                update(_ACCOUNT)
                .where(_ACCOUNT.c.id == self.account_id)
                .values(
                    message_count=_ACCOUNT.c.message_count + n,
                    bytes_stored=_ACCOUNT.c.bytes_stored + self._staged_bytes,
                    fetched_total=_ACCOUNT.c.fetched_total + n,
                )
            )

    def commit(self) -> None:
        """Make every staged message durable (with its ledger row and counters)."""
        try:
            self._flush()
            self.session.commit()
        except BaseException:
            self.rollback()
            raise
        ids, self._staged_ids = self._staged_ids, []
        self._uidl_rows = []
        self._pending = []
        self._pending_bytes = 0
        self._staged_bytes = 0
        self.committed_ids.extend(ids)
        if self.classifier is not None:
            self.classifier.committed()
        if ids and self.on_commit is not None:
            self.on_commit(ids)

    def rollback(self) -> None:
        """Drop everything staged since the last commit."""
        self.session.rollback()
        self._staged_ids = []
        self._uidl_rows = []
        self._pending = []
        self._pending_bytes = 0
        self._staged_bytes = 0
        if self.classifier is not None:
            self.classifier.rolled_back()


def file_sent(session: Session, account_id: int, raw: bytes, meta: MessageMeta, *,
              now: datetime | None = None) -> int:
    """File a copy of a message just sent in the account's Sent folder, read; flushes.

    Same rows as a fetched message (metadata + chunks, counters), without a UIDL.
    Returns the new message id; the caller commits.
    """
    folder_id = folder_id_for(session, account_id, FolderRole.SENT)
    conn = session.connection()
    result = conn.execute(_INSERT_MESSAGE, {
        "account_id": account_id, "folder_id": folder_id, "uidl": None,
        "sent_at": meta.sent_at, "sent_at_source": meta.sent_at_source,
        "fetched_at": now or utcnow(), "from_addr": meta.from_addr, "to_addrs": meta.to_addrs,
        "subject": meta.subject, "message_id": meta.message_id, "size": len(raw),
        "is_read": True, "is_flagged": False,
    })
    pk = result.inserted_primary_key
    assert pk is not None
    message_id = int(pk[0])
    for seq, start in enumerate(range(0, max(len(raw), 1), CHUNK_SIZE)):
        conn.execute(_INSERT_CHUNK, {"message_id": message_id, "seq": seq,
                                     "data": raw[start:start + CHUNK_SIZE]})
    session.execute(
        update(_ACCOUNT).where(_ACCOUNT.c.id == account_id).values(
            message_count=_ACCOUNT.c.message_count + 1,
            bytes_stored=_ACCOUNT.c.bytes_stored + len(raw),
        )
    )
    return message_id
