"""Fetching one account: engine meets storage, health is recorded, signals fire.

:func:`fetch_account` runs the engine's ``sync.fetch`` for one account, session after
session while the server has more (``more_pending``), each on a fresh database session
with its own :class:`~..store.SqlLedger` / :class:`~..store.SqlSink`. It records the
outcome on the account (see :func:`record_success` / :func:`record_failure`):

- success: status OK, failures cleared, next fetch after the account's interval;
- a transient failure (connection, timeout, [IN-USE], [LOGIN-DELAY], [SYS/TEMP]):
  status RETRYING, next try after an exponential back-off with jitter, capped;
- an authentication failure: status NEEDS_PASSWORD (NEEDS_REAUTH for a rejected OAuth
  token) and no further automatic fetching, and no login attempt at all, until the
  user gives a new password (R7): lock-outs at the provider are worse than a pause;
- any other failure only the user can fix (certificate, no UIDL, UIDL reset...):
  NEEDS_ATTENTION, likewise paused (the user may still press "check now").

Claims: one implementation, in :mod:`.scheduling` (``claim``, ``release``,
``new_worker_id``). Whoever claimed an account runs it with
:func:`run_claimed`, which keeps the lease renewed while the fetch runs (a heartbeat;
a lost lease stops the fetch at the next message) and releases it afterwards: the
scheduler's pool, the "check now" thread and the CLI all go through it. Under
:func:`run_claimed` the outcome (success, failure, crash) and the lease's release are
one transaction: an idle poll writes twice in all, the claim and that.

Progress (R16) is kept twice: in this process's registry (every message), and on the
account row (``progress_*``, at most about every half second, cleared at the end) so
that :func:`fetch_progress` answers from any web process, whichever runs the fetch.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..config import net_policy
from ..engine.errors import AuthenticationFailed, PopAccountsError, QuotaExceeded, TokenRejected
from ..engine.types import FetchReport, Progress, ProgressCallback
from ..runtime import get_state
from ..signals import (
    account_disabled,
    account_failed,
    account_fetched,
    account_recovered,
    message_fetched,
)
from ..storage.mailstore import SqlLedger, SqlSink, folder_id_for
from ..storage.models import Account, AccountStatus, value_of
from . import quota, scheduling
from .accounts import credentials_for, retrieval_policy_for, server_spec_for
from .scheduling import LeaseHeartbeat, LeaseLost, new_worker_id

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("flask_popaccounts.services.fetching")

#: Statuses that make :func:`fetch_account` refuse without contacting the server.
NO_LOGIN_STATUSES = frozenset(scheduling.NO_LOGIN_STATUSES)

#: Seconds between progress writes to the account row (the registry sees every message).
PROGRESS_WRITE_SECONDS = 0.5

__all__ = [
    "FetchSkipped", "LeaseLost", "check_now", "fetch_account", "fetch_progress",
    "report_dict", "run_claimed", "wait_for_check",
]


class FetchSkipped(RuntimeError):
    """The account was not fetched, on purpose (no server contact was made).

    ``reason``: "missing", "disabled", "needs_password", "needs_reauth" or "busy".
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"account not fetched: {reason}")
        self.reason = reason


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _engine_sync() -> Any:
    from ..engine import sync

    return sync


@dataclass
class _LeaseToRelease:
    """Set by :func:`run_claimed`: :func:`fetch_account` gives the lease back in the
    transaction that records the outcome (one commit, one fsync, instead of two)."""

    owner: str
    account_id: int
    heartbeat: LeaseHeartbeat | None = None
    released: bool = field(default=False)


_lease_to_release: ContextVar[_LeaseToRelease | None] = ContextVar(
    "popaccounts_lease_to_release", default=None)


def _stage_release(session: Session, owner: str | None, account_id: int) -> None:
    """Add "give the lease back, if still ours" to ``session``'s transaction."""
    if owner is not None:
        session.execute(
            update(Account)
            .where(Account.id == account_id, Account.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )


# -- progress registry (in-process) ------------------------------------------------------

_progress: dict[int, dict[str, Any]] = {}
_progress_lock = threading.Lock()
_threads: dict[int, threading.Thread] = {}


def fetch_progress(account_id: int, app: Flask | None = None) -> dict[str, Any] | None:
    """The current (or last) fetch's progress for a JSON endpoint, or None.

    Keys: running, done, total, bytes_done, bytes_total, stored, error (a code or
    None), started_at / finished_at (ISO 8601).

    A fetch running in this process answers from the registry; otherwise, inside an
    app context (or given ``app``), the account row says whether another process is
    fetching it (``progress_*`` under a live lease) or a "check now" is queued, so any
    web worker can serve the card's JSON endpoint.
    """
    with _progress_lock:
        item = _progress.get(account_id)
        local = dict(item) if item is not None else None
    if local is not None and local["running"]:
        return local
    if app is None:
        from flask import current_app, has_app_context

        if not has_app_context():
            return local
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    with get_state(app).session_factory() as session:
        row = session.execute(
            select(Account.progress_started_at, Account.progress_done,
                   Account.progress_total, Account.progress_bytes,
                   Account.progress_bytes_total, Account.lease_owner,
                   Account.lease_expires_at, Account.check_requested_at, Account.enabled,
                   Account.status).where(Account.id == account_id)
        ).one_or_none()
    if row is None:
        return local
    now = _now()
    # A live lease means a fetch is running somewhere (progress_* appear with its
    # first message; until then it is "connecting").
    fetching_elsewhere = (row.lease_owner is not None and row.lease_expires_at is not None
                          and row.lease_expires_at >= now)
    queued = (row.check_requested_at is not None and row.enabled
              and value_of(row.status) not in NO_LOGIN_STATUSES)
    if not (fetching_elsewhere or queued):
        return local
    started = row.check_requested_at
    if fetching_elsewhere and row.progress_started_at is not None:
        started = row.progress_started_at
    return {"running": True, "done": row.progress_done or 0, "total": row.progress_total or 0,
            "bytes_done": row.progress_bytes or 0, "bytes_total": row.progress_bytes_total or 0,
            "stored": row.progress_done or 0, "error": None,
            "started_at": started.isoformat() if started else None, "finished_at": None}


def _progress_start(account_id: int) -> None:
    with _progress_lock:
        _progress[account_id] = {"running": True, "done": 0, "total": 0, "bytes_done": 0,
                                 "bytes_total": 0, "stored": 0, "error": None,
                                 "started_at": _now().isoformat(), "finished_at": None}


def _progress_update(account_id: int, **values: Any) -> None:
    with _progress_lock:
        item = _progress.get(account_id)
        if item is not None:
            item.update(values)


# -- health ------------------------------------------------------------------------------


_PROGRESS_CLEARED: dict[str, Any] = {
    "progress_started_at": None, "progress_done": None, "progress_total": None,
    "progress_bytes": None, "progress_bytes_total": None,
}


def _clear_progress(account: Account) -> None:
    for key, value in _PROGRESS_CLEARED.items():
        setattr(account, key, value)


def interval_seconds(app: Flask, account: Account) -> float:
    """The account's fetch interval in seconds.

    ``POPACCOUNTS_INTERVAL_UNIT_SECONDS`` (default 60) is the length of one interval
    "minute"; tests shorten it to watch intervals being honoured in real time.
    """
    unit = float(app.config.get("POPACCOUNTS_INTERVAL_UNIT_SECONDS", 60))
    return int(account.fetch_interval_minutes or 5) * unit


def backoff_seconds(app: Flask, failures: int) -> float:
    """Exponential back-off with jitter: base * 2^(n-1), capped, times 0.5-1.0."""
    base = float(app.config["POPACCOUNTS_BACKOFF_BASE_SECONDS"])
    cap = float(app.config["POPACCOUNTS_BACKOFF_MAX_SECONDS"])
    delay = min(cap, base * (2 ** max(0, failures - 1)))
    return delay * random.uniform(0.5, 1.0)


def record_success(app: Flask, session: Session, account: Account, *, now: datetime,
                   release_owner: str | None = None) -> bool:
    """Mark a successful fetch; returns True when the account recovered from failures.

    With ``release_owner``, that owner's lease is given back in the same transaction.
    """
    recovered = int(account.consecutive_failures or 0) > 0 or value_of(account.status) not in (
        AccountStatus.OK.value, AccountStatus.NEW.value)
    account.status = AccountStatus.OK.value  # type: ignore[assignment]
    account.last_attempt_at = now
    account.last_success_at = now
    account.last_error_code = None
    account.consecutive_failures = 0
    account.accept_uidl_reset = False  # a confirmation is good for one import only
    account.next_due_at = now + timedelta(seconds=interval_seconds(app, account))
    _clear_progress(account)
    _stage_release(session, release_owner, account.id)
    session.commit()
    return recovered


def record_failure(app: Flask, session: Session, account: Account, exc: PopAccountsError,
                   *, now: datetime, release_owner: str | None = None) -> bool:
    """Mark a failed fetch; returns True when automatic fetching stopped (user must act).

    With ``release_owner``, that owner's lease is given back in the same transaction.
    """
    account.last_attempt_at = now
    account.last_error_code = exc.code
    account.last_error_at = now
    account.consecutive_failures = int(account.consecutive_failures or 0) + 1
    _clear_progress(account)
    _stage_release(session, release_owner, account.id)
    stopped = False
    if isinstance(exc, QuotaExceeded):  # R19: paused, re-checked after the interval
        quota.hold(app, session, account, now=now)
        return False
    if isinstance(exc, TokenRejected):
        account.status = AccountStatus.NEEDS_REAUTH.value  # type: ignore[assignment]
        stopped = True
    elif isinstance(exc, AuthenticationFailed):
        account.status = AccountStatus.NEEDS_PASSWORD.value  # type: ignore[assignment]
        stopped = True
    elif exc.transient:
        account.status = AccountStatus.RETRYING.value  # type: ignore[assignment]
        account.next_due_at = now + timedelta(
            seconds=backoff_seconds(app, account.consecutive_failures))
    else:
        account.status = AccountStatus.NEEDS_ATTENTION.value  # type: ignore[assignment]
        stopped = True
    session.commit()
    return stopped


def record_crash(app: Flask, session: Session, account: Account, *, now: datetime,
                 release_owner: str | None = None) -> None:
    """A fetch ended by an unexpected error (a bug, the database): back off like a
    transient failure, so the account is not retried at every tick.

    With ``release_owner``, that owner's lease is given back in the same transaction.
    """
    account.last_attempt_at = now
    account.last_error_code = "internal_error"
    account.last_error_at = now
    account.consecutive_failures = int(account.consecutive_failures or 0) + 1
    account.next_due_at = now + timedelta(
        seconds=backoff_seconds(app, account.consecutive_failures))
    _clear_progress(account)
    _stage_release(session, release_owner, account.id)
    session.commit()


# -- the fetch ---------------------------------------------------------------------------


def _add_reports(total: FetchReport, part: FetchReport, *, first: bool) -> None:
    total.server_count = part.server_count
    if first:  # new at the start of the whole fetch
        total.new = part.new
    total.stored += part.stored
    total.bytes_stored += part.bytes_stored
    total.deleted += part.deleted
    total.skipped_too_large = sorted(set(total.skipped_too_large) | set(part.skipped_too_large))
    total.more_pending = part.more_pending
    total.capabilities = part.capabilities


def fetch_account(app: Flask, account_id: int, *, progress: ProgressCallback | None = None,
                  max_sessions: int = 1000) -> FetchReport:
    """Fetch everything new for one account; records its health; returns the sum report.

    The caller holds the account's claim. Raises :class:`FetchSkipped` (no server
    contact) when the account is missing, disabled or stopped for its credentials, and
    re-raises the engine's named error after recording it.
    """
    state = get_state(app)
    sync = _engine_sync()
    net = net_policy(app.config)
    lease = _lease_to_release.get()
    if lease is not None and (lease.account_id != account_id or lease.released):
        lease = None

    def release_owner() -> str | None:
        """The owner whose lease the outcome's transaction gives back (run_claimed)."""
        if lease is None:
            return None
        if lease.heartbeat is not None:
            lease.heartbeat.stop()  # no renewal of a lease about to be given back
        return lease.owner

    def released() -> None:
        if lease is not None:
            lease.released = True
    with state.session_factory() as session:
        account = session.get(Account, account_id)
        if account is None:
            raise FetchSkipped("missing")
        if not account.enabled:
            raise FetchSkipped("disabled")
        if value_of(account.status) in NO_LOGIN_STATUSES:
            raise FetchSkipped(value_of(account.status))
        if quota.paused_for_quota(app, session, account):  # R19: full, no login at all
            raise FetchSkipped(AccountStatus.PAUSED_QUOTA.value)
        owner_id = account.owner_id
        server = server_spec_for(account)
        creds = credentials_for(app, account)
        policy = retrieval_policy_for(app, account)
        inbox_id = folder_id_for(session, account_id)

    sender = app
    total = FetchReport()
    done_before = 0
    bytes_before = 0
    _progress_start(account_id)
    started = _now()
    current: list[Session] = []  # the fetch session running now (for progress writes)
    last_write: float | None = None  # nothing written yet: an idle poll writes nothing
    sqlite = state.engine.dialect.name == "sqlite"

    def write_progress(values: dict[str, Any]) -> None:
        stmt = (update(Account).where(Account.id == account_id).values(**values)
                .execution_options(synchronize_session=False))
        if sqlite and current:
            # SQLite has one writer: the fetch's own session holds the write lock while
            # messages are staged, so the row goes in with that transaction (visible at
            # the next group commit); a second connection would wait for us forever.
            sess = current[-1]
            idle = not sess.in_transaction()
            sess.execute(stmt)
            if idle:
                sess.commit()
        else:
            # PostgreSQL: the sink's transaction does not lock the account row until
            # its commit, so a separate short transaction shows progress at once.
            with state.session_factory() as sess:
                sess.execute(stmt)
                sess.commit()

    def on_progress(p: Progress) -> None:
        nonlocal last_write
        # After the first session the whole backlog is known (report.new): show it.
        overall = max(done_before + p.total, total.new - len(total.skipped_too_large))
        values = {"done": done_before + p.done, "total": overall,
                  "bytes_done": bytes_before + p.bytes_done,
                  "bytes_total": bytes_before + p.bytes_total}
        _progress_update(account_id, **values)
        tick = time.monotonic()
        if (last_write is None or tick - last_write >= PROGRESS_WRITE_SECONDS
                or p.done == p.total):
            row: dict[str, Any] = {
                "progress_done": values["done"], "progress_total": values["total"],
                "progress_bytes": values["bytes_done"],
                "progress_bytes_total": values["bytes_total"]}
            if last_write is None:
                row["progress_started_at"] = started
            last_write = tick
            write_progress(row)
        if progress is not None:
            progress(Progress(total=values["total"], done=values["done"],
                              bytes_total=values["bytes_total"],
                              bytes_done=values["bytes_done"]))

    def on_commit(ids: list[int]) -> None:
        _progress_update(account_id, stored=total.stored + len(ids))
        for mid in ids:
            message_fetched.send(sender, account_id=account_id, message_id=mid)

    try:
        for n in range(max_sessions):
            with state.session_factory() as session:
                current.append(session)
                ledger = SqlLedger(session, account_id)
                sink = quota.guard_sink(app, session, owner_id,
                                        SqlSink(session, account_id, inbox_id, on_commit=on_commit))
                try:
                    report = sync.fetch(server, creds, policy, ledger, sink, net=net,
                                        progress=on_progress)
                finally:
                    current.pop()
            _add_reports(total, report, first=n == 0)
            done_before += report.stored
            bytes_before += report.bytes_stored
            if not report.more_pending:
                break
    except PopAccountsError as exc:
        log.warning("fetch of account %s failed: %s%s", account_id, exc.code,
                    f" ({exc.detail})" if exc.detail else "")
        with state.session_factory() as session:
            account = session.get(Account, account_id)
            stopped = account is not None and record_failure(
                app, session, account, exc, now=started, release_owner=release_owner())
            released()
        _progress_update(account_id, running=False, error=exc.code,
                         finished_at=_now().isoformat())
        account_failed.send(sender, account_id=account_id, code=exc.code,
                            transient=exc.transient)
        if stopped:
            account_disabled.send(sender, account_id=account_id, code=exc.code)
        raise
    except LeaseLost:
        # Another process owns the account now; its fetch records the outcome.
        _progress_update(account_id, running=False, error="lease_lost",
                         finished_at=_now().isoformat())
        raise
    except BaseException as exc:
        _progress_update(account_id, running=False, error="error",
                         finished_at=_now().isoformat())
        if isinstance(exc, Exception):
            try:
                with state.session_factory() as session:
                    account = session.get(Account, account_id)
                    if account is not None:
                        record_crash(app, session, account, now=started,
                                     release_owner=release_owner())
                        released()
            except Exception:
                log.exception("could not record the crash of account %s", account_id)
        raise

    with state.session_factory() as session:
        account = session.get(Account, account_id)
        recovered = account is not None and record_success(
            app, session, account, now=started, release_owner=release_owner())
        released()
    _progress_update(account_id, running=False, stored=total.stored,
                     finished_at=_now().isoformat())
    log.info("fetched account %s: %d new, %d stored, %d deleted", account_id, total.new,
             total.stored, total.deleted)
    if recovered:
        account_recovered.send(sender, account_id=account_id)
    account_fetched.send(sender, account_id=account_id, report=total)
    return total


def run_claimed(app: Flask, account_id: int, owner: str, *,
                progress: ProgressCallback | None = None) -> FetchReport:
    """Fetch an account whose lease ``owner`` holds; renews it meanwhile, releases after.

    The lease is renewed by a :class:`~.scheduling.LeaseHeartbeat` every third of
    ``POPACCOUNTS_LEASE_SECONDS``; if it is found taken over, the fetch stops at the
    next message with :class:`LeaseLost` (what was committed stays; the ledger keeps
    the new owner from storing it again). The outcome's transaction also releases the
    lease; when no outcome is written (skipped, lease lost, the write failed) it is
    released on its own. Raises what :func:`fetch_account` raises.
    """
    state = get_state(app)
    lease_seconds = int(app.config["POPACCOUNTS_LEASE_SECONDS"])
    lease = _LeaseToRelease(owner, account_id)
    token = _lease_to_release.set(lease)
    try:
        with LeaseHeartbeat(state.session_factory, owner, account_id, lease_seconds) as hb:
            lease.heartbeat = hb

            def guarded(p: Progress) -> None:
                hb.check()
                if progress is not None:
                    progress(p)

            # (a module global, looked up at call time: hosts and tests may wrap it)
            return fetch_account(app, account_id, progress=guarded)
    finally:
        _lease_to_release.reset(token)
        if not lease.released:  # skipped, lease lost, or the outcome was not written
            with state.session_factory() as session:
                scheduling.release(session, owner, account_id)


def report_dict(report: FetchReport) -> dict[str, Any]:
    """A FetchReport as JSON-ready values."""
    out = asdict(report)
    out["capabilities"] = sorted(report.capabilities)
    return out


# -- check now -----------------------------------------------------------------------------


def check_now(app: Flask, account_id: int) -> bool:
    """Fetch the account now; False when it cannot start (already running, or refused).

    With the in-process scheduler running, the account is made due at once and goes
    first (:func:`.scheduling.make_due_now`) and the dispatcher is poked: the fetch
    goes through the claim and the bounded worker pool like any other. Without one, a
    background thread of this process claims the account and fetches it.

    Either way the lease guards it: if anyone (this process, another worker, the
    scheduler) is fetching the account, nothing starts. Accounts stopped for their
    credentials, or disabled, are not fetched (no login attempt) until the user acts.
    """
    state = get_state(app)
    with state.session_factory() as session:
        account = session.get(Account, account_id)
        if account is None or scheduling.waits_for_user(account):
            return False
        sched = state.scheduler
        if sched is not None and getattr(sched, "running", False):
            if scheduling.lease_is_live(session, account_id):
                return False
            scheduling.make_due_now(session, account_id)
            sched.poke()
            return True
        owner = new_worker_id()
        lease = int(app.config["POPACCOUNTS_LEASE_SECONDS"])
        if not scheduling.claim(session, owner, account_id, lease):
            return False

    def run() -> None:
        try:
            with app.app_context():
                run_claimed(app, account_id, owner)
        except (PopAccountsError, FetchSkipped, LeaseLost):
            pass  # recorded on the account / nothing to do
        except Exception:
            log.exception("check-now fetch of account %s crashed", account_id)

    _progress_start(account_id)
    thread = threading.Thread(target=run, name=f"popaccounts-check-{account_id}", daemon=True)
    with _progress_lock:
        _threads[account_id] = thread
    thread.start()
    return True


def wait_for_check(account_id: int, timeout: float | None = None) -> bool:
    """Wait for a :func:`check_now` thread of this process to end (tests, the CLI)."""
    with _progress_lock:
        thread = _threads.get(account_id)
    if thread is None:
        return True
    deadline = None if timeout is None else time.monotonic() + timeout
    thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    return not thread.is_alive()
