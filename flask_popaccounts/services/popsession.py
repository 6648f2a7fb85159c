"""One POP3 session of a fetch: the engine's ``sync.fetch`` on a database session of its
own, with the built-in store's ledger and sink (the account's filters classifying, the
owner's quota guarding) or the host's delivery (:mod:`.delivering`), and one retry after
an OAuth token the server refused.

:mod:`.fetching` runs these session after session and records the outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import net_policy
from ..engine.errors import TokenRejected
from ..engine.types import (
    AuthMethod,
    Credentials,
    FetchReport,
    RetrievalPolicy,
    RetrievedMessage,
    ServerSpec,
    Sink,
)
from ..runtime import get_state
from ..storage.mailstore import SqlLedger, SqlSink
from . import delivering, quota
from . import progress as tracking
from .credentials import refresh_refused

if TYPE_CHECKING:
    from flask import Flask
    from sqlalchemy.orm import Session

log = logging.getLogger("flask_popaccounts.services.fetching")

#: Raises (:class:`~.scheduling.LeaseLost`) when the fetch must stop before its next command.
Fence = Callable[[], None]


def _engine_sync() -> Any:
    from ..engine import sync

    return sync


@dataclass
class Plan:
    """What one fetch needs, read from the account in one short transaction."""

    owner_id: str
    server: ServerSpec
    creds: Credentials = field(repr=False)
    policy: RetrievalPolicy
    inbox_id: int  #: where unfiltered mail goes (the Inbox, or the account's chosen folder)
    mark_read: bool = False  #: "mark as read on arrival" (services.retrieval)


def run_session(app: Flask, account_id: int, plan: Plan, creds: Credentials,
                tracker: tracking.ProgressTracker, on_commit: Callable[[list[Any]], None],
                fence: Fence | None, *, report: FetchReport | None = None
                ) -> tuple[FetchReport, Credentials]:
    """One POP3 session on a database session of its own; the report and the credentials
    it logged in with. An OAuth token the server refuses is refreshed once and the
    session tried again before the account is marked "re-authenticate". ``report``
    (optional) is the engine's to fill in: what a failed session did."""
    state = get_state(app)
    sync = _engine_sync()
    net = net_policy(app.config)
    for attempt in (1, 2):
        with state.session_factory() as session:
            tracker.current = session
            # The host's delivery hook (Maildir, LMTP, its own), else the built-in store.
            external = delivering.external_sink(
                app, session, account_id, owner_id=plan.owner_id,
                username=plan.server.username, host=plan.server.host, on_commit=on_commit)
            sink: Sink = external if external is not None else _released(
                session, quota.guard_sink(app, session, plan.owner_id, SqlSink(
                    session, account_id, plan.inbox_id, on_commit=on_commit,
                    classifier=delivering.classifier_for(app, session, account_id,
                                                         plan.owner_id),
                    clock=state.clock, mark_read=plan.mark_read)))
            try:
                report = sync.fetch(plan.server, creds, plan.policy,
                                    SqlLedger(session, account_id), sink,
                                    net=net, progress=tracker, now=state.clock,
                                    report=report, fence=fence)
                return report, creds
            except TokenRejected:
                if attempt == 2 or creds.method is not AuthMethod.XOAUTH2:
                    raise
                log.info("account %s: the server refused its access token; refreshing it "
                         "once and trying again", account_id)
            finally:
                tracker.current = None
                if external is not None:
                    external.close()
        creds = refresh_refused(app, account_id, creds)  # outside any transaction
    raise AssertionError("unreachable")  # pragma: no cover


class WriteReleasingSink:
    """SQLite: a sink that never keeps the database's write lock across network I/O.

    The store buffers small messages and writes them at the group commit, but a large
    one (over a chunk) is streamed into its rows as it is added, and a full buffer is
    written early: from then on the fetch's transaction holds SQLite's only write lock
    while the next messages are read from the server, and every other writer (a page
    saved, another account's commit) waits for it. When an ``add`` left rows written,
    this commits them at once (the engine's group commit then finds them durable; they
    are deleted from the server in a later session at the latest, never before).
    """

    def __init__(self, inner: Sink, session: Session) -> None:
        self.inner = inner
        self.session = session

    def add(self, message: RetrievedMessage) -> None:
        self.inner.add(message)
        if self.session.in_transaction():
            dbapi = self.session.connection().connection.dbapi_connection
            if getattr(dbapi, "in_transaction", False):  # rows written, the lock held
                self.inner.commit()

    def commit(self) -> None:
        self.inner.commit()

    def rollback(self) -> None:
        self.inner.rollback()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def _released(session: Session, sink: Sink) -> Sink:
    if session.get_bind().dialect.name == "sqlite":
        return WriteReleasingSink(sink, session)
    return sink  # PostgreSQL: the open transaction locks only the rows it inserted
