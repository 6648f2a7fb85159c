"""A tiny durable Ledger + Sink over stdlib sqlite3, for engine tests and fault runs.

One table holds each stored message, its metadata and its ledger row, so one
transaction stores all three (as the real SQL store does). ``uidl`` is deliberately
NOT unique: if the engine ever stored a message twice, the tests would see two rows
instead of an IntegrityError hiding the bug.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping
from datetime import UTC, datetime

from flask_popaccounts.engine.types import LedgerEntry, RetrievedMessage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uidl TEXT NOT NULL,
    raw BLOB NOT NULL,
    size INTEGER NOT NULL,
    subject TEXT NOT NULL,
    from_addr TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    sent_at_source TEXT NOT NULL,
    message_id TEXT NOT NULL,
    stored_at TEXT NOT NULL,
    on_server INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS messages_uidl ON messages(uidl);
"""


class SqliteStore:
    """Both :class:`~flask_popaccounts.engine.types.Ledger` and ``Sink`` for one account."""

    def __init__(self, path: str, *, clock: object = None) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(_SCHEMA)
        self._in_tx = False
        self._clock = clock if callable(clock) else (lambda: datetime.now(UTC))
        self.commits = 0
        self.rollbacks = 0

    # Ledger
    def entries(self) -> Mapping[str, LedgerEntry]:
        rows = self.conn.execute("SELECT uidl, stored_at, on_server FROM messages").fetchall()
        return {
            u: LedgerEntry(stored_at=datetime.fromisoformat(s), on_server=bool(o))
            for u, s, o in rows
        }

    def mark_gone(self, uidls: Collection[str]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(
            "UPDATE messages SET on_server = 0 WHERE uidl = ?", [(u,) for u in uidls]
        )
        self.conn.execute("COMMIT")

    # Sink
    def add(self, message: RetrievedMessage) -> None:
        if not self._in_tx:
            self.conn.execute("BEGIN IMMEDIATE")
            self._in_tx = True
        raw = message.spool.read()
        m = message.meta
        self.conn.execute(
            "INSERT INTO messages (uidl, raw, size, subject, from_addr, sent_at, sent_at_source,"
            " message_id, stored_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                message.uidl, raw, message.size, m.subject, m.from_addr, m.sent_at.isoformat(),
                m.sent_at_source, m.message_id, self._clock().isoformat(),  # type: ignore[operator]
            ),
        )

    def commit(self) -> None:
        if self._in_tx:
            self.conn.execute("COMMIT")
            self._in_tx = False
            self.commits += 1

    def rollback(self) -> None:
        if self._in_tx:
            self.conn.execute("ROLLBACK")
            self._in_tx = False
            self.rollbacks += 1

    # Test helpers
    def raw_messages(self) -> list[bytes]:
        return [r[0] for r in self.conn.execute("SELECT raw FROM messages ORDER BY id")]

    def rows(self) -> list[sqlite3.Row]:
        self.conn.row_factory = sqlite3.Row
        try:
            return self.conn.execute("SELECT * FROM messages ORDER BY id").fetchall()
        finally:
            self.conn.row_factory = None

    def set_stored_at(self, uidl: str, when: datetime) -> None:
        self.conn.execute("UPDATE messages SET stored_at = ? WHERE uidl = ?",
                          (when.isoformat(), uidl))

    def close(self) -> None:
        self.conn.close()
