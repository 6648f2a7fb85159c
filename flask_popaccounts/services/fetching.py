"""Fetching one account: engine meets storage, the outcome is recorded, signals fire.

:func:`fetch_account` runs the engine's ``sync.fetch`` for one account, session after
session while the server has more (``more_pending``), each on a fresh database session
with its own :class:`~..storage.mailstore.SqlLedger` / ``SqlSink`` (the account's filters
classify each message inside the sink's transaction, :mod:`.filtering`). The outcome is
recorded on the account by :mod:`.health` (success, back-off, or stopped until the user
acts); then the mail the filters queued (forwards, vacation replies) is sent
(:mod:`.outbox`) and the host's signals fire.

One POP3 session (the engine on a database session, the OAuth retry) is
:mod:`.popsession`'s; before each, an OAuth token is refreshed when near expiry.

Claims: one implementation, in :mod:`.scheduling`. Whoever claimed an account runs it
with :func:`run_claimed`, which keeps the lease renewed while the fetch runs (a
heartbeat; a lost lease stops the fetch at the next message) and releases it
afterwards, in the transaction that records the outcome: the scheduler's pool, the
"check now" thread (:func:`check_now`) and the CLI all go through it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..engine.errors import PopAccountsError
from ..engine.types import (
    Credentials,
    FetchReport,
    Progress,
    ProgressCallback,
)
from ..runtime import PopAccountsState, get_state
from ..signals import (
    account_disabled,
    account_failed,
    account_fetched,
    account_recovered,
    message_fetched,
)
from ..signals import send as send_signal
from ..storage.models import Account, AccountStatus, value_of
from . import health, mailproblems, outbox, quota, retrieval, scheduling
from . import progress as tracking
from .accounts import retrieval_policy_for, server_spec_for
from .credentials import already_recorded, credentials_for, session_credentials
from .popsession import Fence, Plan, run_session
from .scheduling import LeaseHeartbeat, LeaseLost

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("flask_popaccounts.services.fetching")

__all__ = ["FetchSkipped", "check_now", "fetch_account", "report_dict", "run_claimed",
           "wait_for_check"]


class FetchSkipped(RuntimeError):
    """The account was not fetched, on purpose (no server contact was made).

    ``reason``: "missing", "disabled", "needs_password", "needs_reauth", "paused_quota".
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"account not fetched: {reason}")
        self.reason = reason


# -- the lease given back with the outcome ------------------------------------------------


@dataclass
class _LeaseToRelease:
    """Set by :func:`run_claimed`: :func:`fetch_account` gives the lease back in the
    transaction that records the outcome (one commit, one fsync, instead of two)."""

    owner: str
    account_id: int
    heartbeat: LeaseHeartbeat | None = None
    released: bool = field(default=False)

    def take(self) -> str:
        """The owner to release with the outcome; the heartbeat stops renewing first."""
        if self.heartbeat is not None:
            self.heartbeat.stop()  # no renewal of a lease about to be given back
        return self.owner


_lease_to_release: ContextVar[_LeaseToRelease | None] = ContextVar(
    "popaccounts_lease_to_release", default=None)


def _lease_for(account_id: int) -> _LeaseToRelease | None:
    lease = _lease_to_release.get()
    if lease is None or lease.account_id != account_id or lease.released:
        return None
    return lease


# -- the fetch ---------------------------------------------------------------------------


def _plan(app: Flask, state: PopAccountsState, account_id: int) -> Plan:
    """The account's settings and credentials, or :class:`FetchSkipped` (no login)."""
    with state.session_factory() as session:
        account = session.get(Account, account_id)
        if account is None:
            raise FetchSkipped("missing")
        if not account.enabled:
            raise FetchSkipped("disabled")
        if value_of(account.status) in scheduling.NO_LOGIN_STATUSES:
            raise FetchSkipped(value_of(account.status))
        if quota.paused_for_quota(app, session, account):  # R19: full, no login at all
            raise FetchSkipped(AccountStatus.PAUSED_QUOTA.value)
        plan = Plan(owner_id=account.owner_id, server=server_spec_for(account),
                    creds=credentials_for(app, account),
                    policy=retrieval_policy_for(app, account),
                    inbox_id=0, mark_read=bool(account.mark_read))
        # Where unfiltered mail goes (Inbox, or the account's chosen folder): last, as
        # it may create the folder named after the account and commit.
        plan.inbox_id = retrieval.destination_for(session, account)
        return plan


def _add_reports(total: FetchReport, part: FetchReport, *, first: bool) -> None:
    total.server_count = part.server_count
    if first:  # new at the start of the whole fetch
        total.new = part.new
    total.stored += part.stored
    total.bytes_stored += part.bytes_stored
    total.deleted += part.deleted
    total.marked_seen += part.marked_seen
    total.skipped_too_large = sorted(set(total.skipped_too_large) | set(part.skipped_too_large))
    total.more_pending = part.more_pending
    total.capabilities = part.capabilities
    total.refused.update(part.refused)
    total.too_large.update(part.too_large)
    total.dele_refused = sorted(set(total.dele_refused) | set(part.dele_refused))
    total.reappeared = sorted(set(total.reappeared) | set(part.reappeared))
    total.uidl_duplicates = part.uidl_duplicates
    total.uidl_nonconforming = part.uidl_nonconforming


def _session(app: Flask, account_id: int, plan: Plan, creds: Credentials,
             tracker: tracking.ProgressTracker, on_commit: Any, fence: Fence | None,
             known: mailproblems.Known) -> tuple[FetchReport, Credentials]:
    """One session, the account's problem messages applied to its policy and what it
    says of them recorded (:mod:`.mailproblems`), also when it fails."""
    state = get_state(app)
    report = FetchReport()
    plan = dataclasses.replace(plan, policy=known.policy(plan.policy, state.clock()))
    try:
        report, creds = run_session(app, account_id, plan, creds, tracker, on_commit, fence,
                                    report=report)
    except PopAccountsError:
        # What the failed session still tells (refused, in flight) counts too.
        mailproblems.record(state.session_factory, account_id, report, known,
                            now=state.clock())
        raise
    mailproblems.record(state.session_factory, account_id, report, known, now=state.clock())
    return report, creds


def _run_sessions(app: Flask, account_id: int, plan: Plan, tracker: tracking.ProgressTracker,
                  *, max_sessions: int, fence: Fence | None = None
                  ) -> tuple[FetchReport, str | None]:
    """POP3 sessions until the server has nothing more; the sum report and the
    account's ``fetch_warning`` (:func:`.mailproblems.warning_for`)."""
    state = get_state(app)
    total = tracker.total

    def on_commit(ids: list[int] | list[str]) -> None:
        tracking.update_local(app, account_id, stored=total.stored + len(ids))
        tracker.committed()  # the row's progress, now that no write transaction is open
        for mid in ids:  # a stored message's id, or an external delivery's (a str)
            send_signal(message_fetched, app, account_id=account_id, **(
                {"message_id": None, "delivery_id": mid} if isinstance(mid, str)
                else {"message_id": mid}))

    with state.session_factory() as session:
        known = mailproblems.load(session, account_id)
    creds = plan.creds
    for n in range(max_sessions):
        if fence is not None:
            fence()  # no login once the lease cannot be proven ours
        if n:  # a long sync: the token may expire between sessions (issue 11 item 22)
            creds = session_credentials(app, account_id, creds)
        report, creds = _session(app, account_id, plan, creds, tracker, on_commit, fence,
                                 known)
        _add_reports(total, report, first=n == 0)
        tracker.session_done(report)
        if not report.more_pending or report.login_delay:  # LOGIN-DELAY: the next login later
            break
    return total, mailproblems.warning_for(known, total)


def fetch_account(app: Flask, account_id: int, *, progress: ProgressCallback | None = None,
                  max_sessions: int = 1000, fence: Fence | None = None) -> FetchReport:
    """Fetch everything new for one account; records its health; returns the sum report.

    The caller holds the account's claim. Raises :class:`FetchSkipped` (no server
    contact) when the account is missing, disabled or stopped for its credentials, and
    re-raises the engine's named error after recording it. ``fence`` (the lease's
    check) is called before each session's login, after each message and (when the
    engine takes it) before DELE and QUIT; it raises to stop the fetch.
    """
    state = get_state(app)
    lease = _lease_for(account_id)
    plan = _plan(app, state, account_id)
    tracking.start(app, account_id)
    started = state.clock()
    tracker = tracking.ProgressTracker(app, account_id, FetchReport(), started=started,
                                       then=progress)
    try:
        total, warning = _run_sessions(app, account_id, plan, tracker,
                                       max_sessions=max_sessions, fence=fence)
    except PopAccountsError as exc:
        if already_recorded(exc):  # a refused token refresh, recorded by credentials
            tracking.finish(app, account_id, error=exc.code)
            raise
        _failed(app, account_id, exc, started, lease)
        raise
    except LeaseLost:
        # Another process owns the account now; its fetch records the outcome.
        tracking.finish(app, account_id, error="lease_lost")
        raise
    except BaseException as exc:
        tracking.finish(app, account_id, error="error")
        if isinstance(exc, Exception):
            _crashed(app, account_id, started, lease)
        raise
    _succeeded(app, account_id, total, started, lease, warning)
    return total


def _outcome(app: Flask, account_id: int, lease: _LeaseToRelease | None,
             record: Any) -> Any:
    """Record the outcome (``record(session, account, owner)``) with the lease's release."""
    with get_state(app).session_factory() as session:
        account = session.get(Account, account_id)
        if account is None:
            return None
        result = record(session, account, lease.take() if lease is not None else None)
    if lease is not None:
        lease.released = True
    return result


def _failed(app: Flask, account_id: int, exc: PopAccountsError, started: Any,
            lease: _LeaseToRelease | None) -> None:
    log.warning("fetch of account %s failed: %s%s", account_id, exc.code,
                f" ({exc.detail})" if exc.detail else "")
    stopped = _outcome(app, account_id, lease, lambda s, a, owner: health.record_failure(
        app, s, a, exc, now=started, release_owner=owner))
    tracking.finish(app, account_id, error=exc.code)
    outbox.deliver_after_fetch(app, account_id)
    send_signal(account_failed, app, account_id=account_id, code=exc.code, transient=exc.transient)
    if stopped:
        send_signal(account_disabled, app, account_id=account_id, code=exc.code)


def _crashed(app: Flask, account_id: int, started: Any, lease: _LeaseToRelease | None) -> None:
    try:
        _outcome(app, account_id, lease, lambda s, a, owner: health.record_crash(
            app, s, a, now=started, release_owner=owner))
    except Exception:
        log.exception("could not record the crash of account %s", account_id)


def _succeeded(app: Flask, account_id: int, total: FetchReport, started: Any,
               lease: _LeaseToRelease | None, warning: str | None) -> None:
    def record(s: Any, a: Account, owner: str | None) -> bool:
        a.fetch_warning = warning  # in the outcome's own transaction
        return health.record_success(app, s, a, now=started, release_owner=owner,
                                     login_delay=total.login_delay, stored=total.stored)

    recovered = _outcome(app, account_id, lease, record)
    tracking.finish(app, account_id, stored=total.stored)
    log.info("fetched account %s: %d new, %d stored, %d deleted", account_id, total.new,
             total.stored, total.deleted)
    if recovered:
        send_signal(account_recovered, app, account_id=account_id)
    outbox.deliver_after_fetch(app, account_id)
    send_signal(account_fetched, app, account_id=account_id, report=total)


def run_claimed(app: Flask, account_id: int, owner: str, *,
                progress: ProgressCallback | None = None) -> FetchReport:
    """Fetch an account whose lease ``owner`` holds; renews it meanwhile, releases after.

    The lease is renewed by a :class:`~.leases.LeaseHeartbeat` every quarter of
    ``POPACCOUNTS_LEASE_SECONDS`` (on the heartbeat's own connection pool); if it is
    found taken over, or could not be renewed for most of the lease, the fetch stops
    before its next command (before a session's login, after each message, and before
    DELE and again before QUIT) with :class:`~.leases.LeaseLost`
    (what was committed stays; the ledger keeps the new owner from storing it again).
    The outcome's transaction also releases the lease; when no outcome is written
    (skipped, lease lost, the write failed) it is released on its own. Raises what
    :func:`fetch_account` raises.
    """
    state = get_state(app)
    lease_seconds = float(app.config["POPACCOUNTS_LEASE_SECONDS"])
    lease = _LeaseToRelease(owner, account_id)
    token = _lease_to_release.set(lease)
    try:
        with LeaseHeartbeat(state.heartbeat_factory, owner, account_id,
                            lease_seconds) as hb:
            lease.heartbeat = hb

            def guarded(p: Progress) -> None:
                hb.check()
                if progress is not None:
                    progress(p)

            # (a module global, looked up at call time: hosts and tests may wrap it)
            return fetch_account(app, account_id, progress=guarded, fence=hb.check)
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
        now = state.clock()
        sched = state.scheduler
        if sched is not None and getattr(sched, "running", False):
            if scheduling.lease_is_live(session, account_id):
                return False
            scheduling.make_due_now(session, account_id, now=now)
            sched.poke()
            return True
        owner = scheduling.new_worker_id()
        lease = float(app.config["POPACCOUNTS_LEASE_SECONDS"])
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

    tracking.start(app, account_id)
    thread = threading.Thread(target=run, name=f"popaccounts-check-{account_id}", daemon=True)
    reg = state.fetches
    with reg.lock:
        reg.threads[account_id] = thread
    thread.start()
    return True


def wait_for_check(app: Flask, account_id: int, timeout: float | None = None) -> bool:
    """Wait for a :func:`check_now` thread of this process to end (tests, the CLI)."""
    reg = get_state(app).fetches
    with reg.lock:
        thread = reg.threads.get(account_id)
    if thread is None:
        return True
    deadline = None if timeout is None else time.monotonic() + timeout
    thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    return not thread.is_alive()
