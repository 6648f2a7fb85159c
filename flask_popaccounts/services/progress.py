"""Fetch progress (R16): the card's live bar, from whichever process runs the fetch.

Progress is kept twice:

- in this process's registry for the app (``get_state(app).fetches``), every message;
- on the account row (``progress_*``), after the fetch's commits, at most about every
  :data:`WRITE_SECONDS`, and cleared when the fetch ends (or when a new claim takes a
  crashed fetch's account over), so that :func:`fetch_progress` answers from any web
  process, whichever process runs the fetch, and only while its lease is live.

:class:`ProgressTracker` is what a fetch feeds: it turns the engine's per-session
:class:`~..engine.types.Progress` into the whole fetch's figures (a big first sync
takes several POP3 sessions) and writes them where readers look.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from ..engine.types import FetchReport, Progress, ProgressCallback
from ..runtime import FetchRegistry, get_state
from ..storage.models import Account, value_of
from .scheduling import NO_LOGIN_STATUSES, lease_live_clause

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
        live = lease_live_clause(session.get_bind().dialect)
        row = session.execute(
            select(Account.progress_started_at, Account.progress_done,
                   Account.progress_total, Account.progress_bytes,
                   Account.progress_bytes_total, case((live, 1), else_=0).label("lease_live"),
                   Account.check_requested_at, Account.enabled,
                   Account.status).where(Account.id == account_id)
        ).one_or_none()
    if row is None:
        return local
    return _from_row(row) or local


def owner_fetches(app: Flask, session: Session, owner_id: str
                  ) -> list[tuple[Account, dict[str, Any] | None]]:
    """Each of the owner's accounts (as :func:`.accounts.list_accounts` orders them)
    with its running fetch's progress (None when none runs), in one query.

    What :func:`fetch_progress` answers for one account, for a whole page at once: a
    fetch of this process from the registry, any other from the row under a live
    lease, a queued "check now" as running. The rows are read afresh (a poll must
    see what other sessions committed since).
    """
    live = lease_live_clause(session.get_bind().dialect)
    rows = session.execute(
        select(Account, case((live, 1), else_=0).label("lease_live"))
        .where(Account.owner_id == str(owner_id))
        .order_by(Account.is_default.desc(), Account.name, Account.id)
        .execution_options(populate_existing=True)
    ).all()
    reg = _registry(app)
    with reg.lock:
        local = {row[0].id: dict(reg.progress[row[0].id]) for row in rows
                 if row[0].id in reg.progress and reg.progress[row[0].id]["running"]}
    out: list[tuple[Account, dict[str, Any] | None]] = []
    for account, lease_live in rows:
        info = local.get(account.id)
        if info is None:
            info = _from_row(_RowView(account, bool(lease_live)))
        out.append((account, info))
    return out


class _RowView:
    """An account with its lease's liveness, read like :func:`fetch_progress`'s row."""

    def __init__(self, account: Account, lease_live: bool) -> None:
        self._account = account
        self.lease_live = lease_live

    def __getattr__(self, name: str) -> Any:
        return getattr(self._account, name)


def _from_row(row: Any) -> dict[str, Any] | None:
    # A live lease (by the database's clock) means a fetch is running somewhere
    # (progress_* appear with its first commit; until then it is "connecting"). A
    # crashed fetch's lease runs out and its frozen figures are no longer shown.
    fetching_elsewhere = bool(row.lease_live)
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

    Every message updates this process's registry. The account row (what other
    processes read) is written by :meth:`committed`, which the fetch calls right after
    each of its commits, at most every :data:`WRITE_SECONDS`: on ``current``, the
    fetch's own database session, which has just committed and holds nothing, in a
    transaction of its own that commits at once. So no write transaction ever stays
    open across network I/O (SQLite has one writer: a progress UPDATE left open inside
    the fetch's transaction made every other writer wait and fail with "database is
    locked"), and no second connection is taken per fetch (PostgreSQL's pool).
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
        self._latest: dict[str, Any] | None = None  # figures not yet on the row
        self._factory: Callable[[], Session] = get_state(app).session_factory

    def session_done(self, report: FetchReport) -> None:
        """One POP3 session ended: its messages count as done for the next one."""
        self.done_before += report.stored
        self.bytes_before += report.bytes_stored

    def __call__(self, p: Progress) -> None:
        total = self.total
        # The whole backlog, from the first message on (a capped session's p.backlog;
        # after the first session, report.new), not just this session's share.
        overall = max(self.done_before + p.total, self.done_before + p.backlog,
                      total.new - len(total.skipped_too_large))
        values = {"done": self.done_before + p.done, "total": overall,
                  "bytes_done": self.bytes_before + p.bytes_done,
                  "bytes_total": self.bytes_before + p.bytes_total}
        update_local(self.app, self.account_id, **values)
        self._latest = values
        if self.then is not None:
            self.then(Progress(total=values["total"], done=values["done"],
                               bytes_total=values["bytes_total"],
                               bytes_done=values["bytes_done"]))

    def committed(self) -> None:
        """The fetch just committed: put the latest figures on the row (throttled)."""
        values = self._latest
        tick = time.monotonic()
        last = self._last_write
        if values is None or (last is not None and tick - last < WRITE_SECONDS):
            return
        row: dict[str, Any] = {
            "progress_done": values["done"], "progress_total": values["total"],
            "progress_bytes": values["bytes_done"],
            "progress_bytes_total": values["bytes_total"]}
        if last is None:
            row["progress_started_at"] = self.started
        self._last_write = tick
        self._latest = None
        stmt = (update(Account).where(Account.id == self.account_id).values(**row)
                .execution_options(synchronize_session=False))
        sess = self.current
        if sess is not None and not sess.in_transaction():
            sess.execute(stmt)
            sess.commit()
            return
        with self._factory() as own:  # (no idle fetch session: a short one of our own)
            own.execute(stmt)
            own.commit()
