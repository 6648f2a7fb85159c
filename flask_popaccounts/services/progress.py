"""Fetch progress (R16): the card's live bar, from whichever process runs the fetch.

Progress is kept twice:

- in this process's registry for the app (``get_state(app).fetches``), every message;
- on the account row (``progress_*``), at most about every :data:`WRITE_SECONDS`, and
  cleared when the fetch ends, so that :func:`fetch_progress` answers from any web
  process, whichever process runs the fetch.

:class:`ProgressTracker` is what a fetch feeds: it turns the engine's per-session
:class:`~..engine.types.Progress` into the whole fetch's figures (a big first sync
takes several POP3 sessions) and writes them where readers look.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..engine.types import FetchReport, Progress, ProgressCallback
from ..runtime import FetchRegistry, get_state
from ..storage.models import Account, value_of
from .scheduling import NO_LOGIN_STATUSES

if TYPE_CHECKING:
    from flask import Flask

#: Seconds between progress writes to the account row (the registry sees every message).
WRITE_SECONDS = 0.5

_CLEARED: dict[str, Any] = {
    "progress_started_at": None, "progress_done": None, "progress_total": None,
    "progress_bytes": None, "progress_bytes_total": None,
}


def clear_columns(account: Account) -> None:
    """Forget the row's progress (the fetch ended; part of its outcome's transaction)."""
    for key, value in _CLEARED.items():
        setattr(account, key, value)


def _registry(app: Flask) -> FetchRegistry:
    return get_state(app).fetches


def start(app: Flask, account_id: int) -> None:
    """A fetch of the account begins (or is about to) in this process."""
    reg = _registry(app)
    with reg.lock:
        reg.progress[account_id] = {
            "running": True, "done": 0, "total": 0, "bytes_done": 0, "bytes_total": 0,
            "stored": 0, "error": None, "started_at": get_state(app).clock().isoformat(),
            "finished_at": None}


def update_local(app: Flask, account_id: int, **values: Any) -> None:
    """Change the registry's figures for a fetch of this process."""
    reg = _registry(app)
    with reg.lock:
        item = reg.progress.get(account_id)
        if item is not None:
            item.update(values)


def finish(app: Flask, account_id: int, *, error: str | None = None, **values: Any) -> None:
    """The fetch ended (``error``: a code, or None on success)."""
    update_local(app, account_id, running=False, error=error,
                 finished_at=get_state(app).clock().isoformat(), **values)


def fetch_progress(account_id: int, app: Flask | None = None) -> dict[str, Any] | None:
    """The current (or last) fetch's progress for a JSON endpoint, or None.

    Keys: running, done, total, bytes_done, bytes_total, stored, error (a code or
    None), started_at / finished_at (ISO 8601).

    A fetch running in this process answers from the registry; otherwise the account
    row says whether another process is fetching it (``progress_*`` under a live lease)
    or a "check now" is queued, so any web worker can serve the card's JSON endpoint.
    ``app`` defaults to the current app.
    """
    if app is None:
        from ..runtime import this_app

        app = this_app()
    reg = _registry(app)
    with reg.lock:
        item = reg.progress.get(account_id)
        local = dict(item) if item is not None else None
    if local is not None and local["running"]:
        return local
    state = get_state(app)
    with state.session_factory() as session:
        row = session.execute(
            select(Account.progress_started_at, Account.progress_done,
                   Account.progress_total, Account.progress_bytes,
                   Account.progress_bytes_total, Account.lease_owner,
                   Account.lease_expires_at, Account.check_requested_at, Account.enabled,
                   Account.status).where(Account.id == account_id)
        ).one_or_none()
    if row is None:
        return local
    return _from_row(row, state.clock()) or local


def _from_row(row: Any, now: datetime) -> dict[str, Any] | None:
    # A live lease means a fetch is running somewhere (progress_* appear with its
    # first message; until then it is "connecting").
    fetching_elsewhere = (row.lease_owner is not None and row.lease_expires_at is not None
                          and row.lease_expires_at >= now)
    queued = (row.check_requested_at is not None and row.enabled
              and value_of(row.status) not in NO_LOGIN_STATUSES)
    if not (fetching_elsewhere or queued):
        return None
    started = row.check_requested_at
    if fetching_elsewhere and row.progress_started_at is not None:
        started = row.progress_started_at
    return {"running": True, "done": row.progress_done or 0, "total": row.progress_total or 0,
            "bytes_done": row.progress_bytes or 0, "bytes_total": row.progress_bytes_total or 0,
            "stored": row.progress_done or 0, "error": None,
            "started_at": started.isoformat() if started else None, "finished_at": None}


class ProgressTracker:
    """The whole fetch's progress, fed by the engine session by session.

    ``current`` is the database session of the POP3 session running now (set by the
    fetch): on SQLite the row's progress goes in with that session's transaction.
    ``then`` is the caller's own callback (the CLI's bar, the lease check).
    """

    def __init__(self, app: Flask, account_id: int, total: FetchReport, *,
                 started: datetime, then: ProgressCallback | None = None) -> None:
        self.app = app
        self.account_id = account_id
        self.total = total
        self.started = started
        self.then = then
        self.done_before = 0
        self.bytes_before = 0
        self.current: Session | None = None
        self._last_write: float | None = None  # nothing written yet: idle polls write nothing
        state = get_state(app)
        self._factory: Callable[[], Session] = state.session_factory
        self._sqlite = state.engine.dialect.name == "sqlite"

    def session_done(self, report: FetchReport) -> None:
        """One POP3 session ended: its messages count as done for the next one."""
        self.done_before += report.stored
        self.bytes_before += report.bytes_stored

    def __call__(self, p: Progress) -> None:
        total = self.total
        # After the first session the whole backlog is known (report.new): show it.
        overall = max(self.done_before + p.total, total.new - len(total.skipped_too_large))
        values = {"done": self.done_before + p.done, "total": overall,
                  "bytes_done": self.bytes_before + p.bytes_done,
                  "bytes_total": self.bytes_before + p.bytes_total}
        update_local(self.app, self.account_id, **values)
        tick = time.monotonic()
        last = self._last_write
        if last is None or tick - last >= WRITE_SECONDS or p.done == p.total:
            row: dict[str, Any] = {
                "progress_done": values["done"], "progress_total": values["total"],
                "progress_bytes": values["bytes_done"],
                "progress_bytes_total": values["bytes_total"]}
            if last is None:
                row["progress_started_at"] = self.started
            self._last_write = tick
            self._write(row)
        if self.then is not None:
            self.then(Progress(total=values["total"], done=values["done"],
                               bytes_total=values["bytes_total"],
                               bytes_done=values["bytes_done"]))

    def _write(self, values: dict[str, Any]) -> None:
        stmt = (update(Account).where(Account.id == self.account_id).values(**values)
                .execution_options(synchronize_session=False))
        sess = self.current
        if self._sqlite and sess is not None:
            # SQLite has one writer: the fetch's own session holds the write lock while
            # messages are staged, so the row goes in with that transaction (visible at
            # the next group commit); a second connection would wait for us forever.
            idle = not sess.in_transaction()
            sess.execute(stmt)
            if idle:
                sess.commit()
        else:
            # PostgreSQL: the sink's transaction does not lock the account row until
            # its commit, so a separate short transaction shows progress at once.
            with self._factory() as own:
                own.execute(stmt)
                own.commit()
