"""The built-in SQL store as a delivery: the default, with the scanners' verdicts.

The store itself is :class:`~..mailstore.SqlSink` (messages, chunks and ledger rows in
one transaction, group commits: unchanged). Exactly once by construction: a message and
its ledger row become durable in the same commit, so a crash leaves both or neither,
and the bytes are kept exactly as fetched (no header is added).

When the host registers scanners, :class:`ScanClassifier` asks them inside the store's
transaction, before the account's filters: "junk" files the message in the account's
Junk folder (created on demand) without running the filters (no forward, no vacation
reply for spam); "reject" stores nothing but the ledger row (seen: never fetched again,
deleted from the server per the account's policy) and a rejection record with the
reason, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from ...engine.clock import Clock, utcnow
from ...engine.delivery import JUNK, ScanResult, Verdict
from ...engine.types import RetrievedMessage
from ..mailstore import Classifier, Placement
from ..models import Folder, FolderRole
from . import records

#: The name of this delivery in records and logs.
NAME = "sql"

#: message -> the scanners' verdict (the services bind the owner and the account)
ScanFn = Callable[[RetrievedMessage], ScanResult]


def folder_named(session: Session, account_id: int, name: str) -> int:
    """The id of the account's folder called ``name`` (case-insensitively), created in
    the session's transaction when there is none."""
    rows = session.execute(select(Folder.id, Folder.name)
                           .where(Folder.account_id == account_id)).all()
    found = next((fid for fid, n in rows if n == name), None)
    if found is None:
        found = next((fid for fid, n in rows if n.casefold() == name.casefold()), None)
    if found is None:
        result = session.connection().execute(insert(Folder), {
            "account_id": account_id, "name": name, "role": FolderRole.CUSTOM.value})
        pk = result.inserted_primary_key
        assert pk is not None
        found = pk[0]
    return int(found)


class ScanClassifier:
    """A :class:`~..mailstore.Classifier`: the scanners first, then the filters (``inner``)."""

    def __init__(self, account_id: int, scan: ScanFn, inner: Classifier | None, *,
                 clock: Clock = utcnow) -> None:
        self.account_id = account_id
        self.scan = scan
        self.inner = inner
        self.clock = clock
        self._junk_id: int | None = None

    def classify(self, session: Session, message: RetrievedMessage) -> Placement | None:
        result = self.scan(message)
        if result.verdict is Verdict.REJECT:
            meta = message.meta
            records.insert_rows(session, [records.row(
                self.account_id, message.uidl, records.REJECTED, target=NAME,
                reason=result.reason or "rejected", from_addr=meta.from_addr,
                subject=meta.subject, size=message.size, at=self.clock())])
            return Placement(rejected=result.reason or "rejected")
        if result.verdict is Verdict.JUNK:
            if self._junk_id is None:
                self._junk_id = folder_named(session, self.account_id, JUNK)
            return Placement(folder_id=self._junk_id)
        return self.inner.classify(session, message) if self.inner is not None else None

    def committed(self) -> None:
        if self.inner is not None:
            self.inner.committed()

    def rolled_back(self) -> None:
        self._junk_id = None  # a folder created in the lost transaction is gone
        if self.inner is not None:
            self.inner.rolled_back()
