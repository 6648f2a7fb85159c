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

Callers own the claim: the scheduler claims with ``services.scheduling.claim_due``;
:func:`check_now` and the CLI claim one account with :func:`claim`.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from ..engine.errors import AuthenticationFailed, PopAccountsError, TokenRejected
from ..engine.types import FetchReport, Progress, ProgressCallback
from ..extension import get_state
from ..models import Account, AccountStatus, value_of
from ..signals import (
    account_disabled,
    account_failed,
    account_fetched,
    account_recovered,
    message_fetched,
)
from ..store import SqlLedger, SqlSink, folder_id_for
from . import scheduling
from .accounts import credentials_for, retrieval_policy_for, server_spec_for

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("flask_popaccounts.services.fetching")

#: Statuses that make :func:`fetch_account` refuse without contacting the server.
NO_LOGIN_STATUSES = frozenset({AccountStatus.NEEDS_PASSWORD.value,
                               AccountStatus.NEEDS_REAUTH.value})


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


# -- claim ---------------------------------------------------------------------------------


def new_owner() -> str:
    """A lease owner id for this process and this job."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def claim(session: Session, account_id: int, owner: str, lease_seconds: int) -> bool:
    """Take the account's lease for ``owner`` if it is free or expired; commits.

    One conditional UPDATE, atomic on every backend (PostgreSQL re-checks the WHERE
    clause after waiting for a concurrent writer), so of two claimants one wins.
    Re-claiming one's own lease extends it.
    """
    now = _now()
    result = session.execute(
        update(Account)
        .where(
            Account.id == account_id,
            or_(Account.lease_owner.is_(None), Account.lease_expires_at < now,
                Account.lease_owner == owner),
        )
        .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return int(result.rowcount) == 1  # type: ignore[attr-defined]


def release(session: Session, account_id: int, owner: str) -> None:
    """Give the lease back, only if it is still ours; commits."""
    scheduling.release(session, owner, account_id)


# -- progress registry (in-process) ------------------------------------------------------

_progress: dict[int, dict[str, Any]] = {}
_progress_lock = threading.Lock()
_threads: dict[int, threading.Thread] = {}


def fetch_progress(account_id: int) -> dict[str, Any] | None:
    """The current (or last) fetch's progress for a JSON endpoint, or None.

    Keys: running, done, total, bytes_done, bytes_total, stored, error (a code or
    None), started_at / finished_at (ISO 8601).
    """
    with _progress_lock:
        item = _progress.get(account_id)
        return dict(item) if item is not None else None


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


def backoff_seconds(app: Flask, failures: int) -> float:
    """Exponential back-off with jitter: base * 2^(n-1), capped, times 0.5-1.0."""
    base = float(app.config["POPACCOUNTS_BACKOFF_BASE_SECONDS"])
    cap = float(app.config["POPACCOUNTS_BACKOFF_MAX_SECONDS"])
    delay = min(cap, base * (2 ** max(0, failures - 1)))
    return delay * random.uniform(0.5, 1.0)


def record_success(app: Flask, session: Session, account: Account, *, now: datetime) -> bool:
    """Mark a successful fetch; returns True when the account recovered from failures."""
    recovered = int(account.consecutive_failures or 0) > 0 or value_of(account.status) not in (
        AccountStatus.OK.value, AccountStatus.NEW.value)
    account.status = AccountStatus.OK.value  # type: ignore[assignment]
    account.last_attempt_at = now
    account.last_success_at = now
    account.last_error_code = None
    account.consecutive_failures = 0
    account.accept_uidl_reset = False  # a confirmation is good for one import only
    account.next_due_at = now + timedelta(minutes=int(account.fetch_interval_minutes or 5))
    session.commit()
    return recovered


def record_failure(app: Flask, session: Session, account: Account, exc: PopAccountsError,
                   *, now: datetime) -> bool:
    """Mark a failed fetch; returns True when automatic fetching stopped (user must act)."""
    account.last_attempt_at = now
    account.last_error_code = exc.code
    account.last_error_at = now
    account.consecutive_failures = int(account.consecutive_failures or 0) + 1
    stopped = False
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
    net = state.net_policy(app.config)
    with state.session_factory() as session:
        account = session.get(Account, account_id)
        if account is None:
            raise FetchSkipped("missing")
        if not account.enabled:
            raise FetchSkipped("disabled")
        if value_of(account.status) in NO_LOGIN_STATUSES:
            raise FetchSkipped(value_of(account.status))
        server = server_spec_for(account)
        creds = credentials_for(app, account)
        policy = retrieval_policy_for(app, account)
        inbox_id = folder_id_for(session, account_id)

    sender = app
    total = FetchReport()
    done_before = 0
    bytes_before = 0
    _progress_start(account_id)

    def on_progress(p: Progress) -> None:
        _progress_update(account_id, done=done_before + p.done, total=done_before + p.total,
                         bytes_done=bytes_before + p.bytes_done,
                         bytes_total=bytes_before + p.bytes_total)
        if progress is not None:
            progress(Progress(total=done_before + p.total, done=done_before + p.done,
                              bytes_total=bytes_before + p.bytes_total,
                              bytes_done=bytes_before + p.bytes_done))

    def on_commit(ids: list[int]) -> None:
        _progress_update(account_id, stored=total.stored + len(ids))
        for mid in ids:
            message_fetched.send(sender, account_id=account_id, message_id=mid)

    started = _now()
    try:
        for n in range(max_sessions):
            with state.session_factory() as session:
                ledger = SqlLedger(session, account_id)
                sink = SqlSink(session, account_id, inbox_id, on_commit=on_commit)
                report = sync.fetch(server, creds, policy, ledger, sink, net=net,
                                    progress=on_progress)
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
            stopped = account is not None and record_failure(app, session, account, exc,
                                                             now=started)
        _progress_update(account_id, running=False, error=exc.code,
                         finished_at=_now().isoformat())
        account_failed.send(sender, account_id=account_id, code=exc.code,
                            transient=exc.transient)
        if stopped:
            account_disabled.send(sender, account_id=account_id, code=exc.code)
        raise
    except BaseException:
        _progress_update(account_id, running=False, error="error",
                         finished_at=_now().isoformat())
        raise

    with state.session_factory() as session:
        account = session.get(Account, account_id)
        recovered = account is not None and record_success(app, session, account, now=started)
    _progress_update(account_id, running=False, stored=total.stored,
                     finished_at=_now().isoformat())
    log.info("fetched account %s: %d new, %d stored, %d deleted", account_id, total.new,
             total.stored, total.deleted)
    if recovered:
        account_recovered.send(sender, account_id=account_id)
    account_fetched.send(sender, account_id=account_id, report=total)
    return total


def report_dict(report: FetchReport) -> dict[str, Any]:
    """A FetchReport as JSON-ready values."""
    out = asdict(report)
    out["capabilities"] = sorted(report.capabilities)
    return out


# -- check now -----------------------------------------------------------------------------


def check_now(app: Flask, account_id: int) -> bool:
    """Fetch the account now, in a background thread; False when it cannot start.

    Guarded by the lease: if anyone (this process, another worker, the scheduler)
    is fetching the account, nothing starts. Accounts stopped for their credentials
    are not fetched (no login attempt) until the user updates them.
    """
    state = get_state(app)
    with state.session_factory() as session:
        account = session.get(Account, account_id)
        if account is None or value_of(account.status) in NO_LOGIN_STATUSES:
            return False
        owner = new_owner()
        lease = int(app.config["POPACCOUNTS_LEASE_SECONDS"])
        if not claim(session, account_id, owner, lease):
            return False

    def run() -> None:
        try:
            with app.app_context():
                fetch_account(app, account_id)
        except (PopAccountsError, FetchSkipped):
            pass  # recorded on the account / nothing to do
        except Exception:
            log.exception("check-now fetch of account %s crashed", account_id)
        finally:
            with state.session_factory() as session:
                release(session, account_id, owner)

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
