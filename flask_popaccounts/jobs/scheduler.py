"""Fetching on a schedule inside the host process (APScheduler 3.x).

One ``BackgroundScheduler`` runs the dispatcher every
``POPACCOUNTS_SCHEDULER_TICK_SECONDS``: it claims as many due accounts as there are
free workers (services.scheduling.claim_due: never more than it can start at once) and
hands each to a bounded thread pool (``POPACCOUNTS_WORKERS``, bounded by the database
pool: one connection per worker, see :func:`_workers_for_pool`). A worker fetches its
account inside an app context through services.fetching.run_claimed, which keeps the
lease renewed while the fetch runs (so a long first sync keeps its claim, and a fetch
that cannot renew stops) and releases it at the end; then the worker claims
the next due account itself, so a backlog is worked off at the pool's pace rather than
a few accounts per tick. A crashed process stops renewing; its leases expire and
another process takes the accounts over.

"Check now" makes the account due at once and calls :meth:`FetchScheduler.poke`, which
runs the dispatcher immediately instead of at the next tick.

Several gunicorn workers, the debug reloader's two processes or several machines on one
PostgreSQL database may all run this; the lease makes sure each account is fetched by
one of them at a time. ``flask popaccounts scheduler`` runs it alone in the foreground.
Under the debug reloader, :func:`start_in_process` leaves the watcher process (which
never serves) alone; the lease would keep it harmless anyway.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

from ..engine.clock import utcnow
from ..engine.errors import PopAccountsError
from ..runtime import get_state, pool_capacity
from ..services import scheduling

log = logging.getLogger("flask_popaccounts.scheduler")


class FetchScheduler:
    """The dispatcher and the worker pool for one app."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        cfg = app.config
        self.workers = _workers_for_pool(app, max(1, int(cfg["POPACCOUNTS_WORKERS"])))
        self.tick = float(cfg["POPACCOUNTS_SCHEDULER_TICK_SECONDS"])
        self.lease_seconds = float(cfg["POPACCOUNTS_LEASE_SECONDS"])
        self.worker_id = scheduling.new_worker_id()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="popaccounts-fetch")
        self._in_flight: set[int] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._scheduler = BackgroundScheduler(daemon=True)

    # -- lifecycle ---------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`shutdown`."""
        return bool(self._scheduler.running) and not self._stopping.is_set()

    def start(self) -> None:
        self._scheduler.add_job(self.dispatch, "interval", seconds=self.tick, id="dispatch",
                                max_instances=1, coalesce=True, next_run_time=_soon(),
                                misfire_grace_time=None)
        self._scheduler.start()
        log.info("scheduler %s started: %d workers, tick %ss", self.worker_id, self.workers,
                 self.tick)

    def shutdown(self, wait: bool = True) -> None:
        """Stop dispatching; with ``wait``, let running fetches finish (leases released)."""
        self._stopping.set()
        self._scheduler.shutdown(wait=wait)
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def poke(self) -> None:
        """Run the dispatcher now (after "check now"), instead of at the next tick."""
        try:
            self._scheduler.modify_job("dispatch", next_run_time=_soon())
        except Exception:  # the scheduler may be shutting down
            log.debug("could not poke the dispatcher", exc_info=True)

    @property
    def in_flight(self) -> frozenset[int]:
        """Accounts this scheduler is fetching right now."""
        with self._lock:
            return frozenset(self._in_flight)

    # -- jobs --------------------------------------------------------------------
    def _claim(self, limit: int) -> list[int]:
        with self._lock:
            limit = min(limit, self.workers - len(self._in_flight))
        if limit <= 0 or self._stopping.is_set():
            return []
        with get_state(self.app).session_factory() as session:
            claimed = scheduling.claim_due(session, self.worker_id, limit, self.lease_seconds,
                                           now=get_state(self.app).clock())
        with self._lock:
            self._in_flight.update(claimed)
        return claimed

    def dispatch(self) -> list[int]:
        """Claim due accounts for the free workers and start them; returns their ids."""
        try:
            claimed = self._claim(self.workers)
        except Exception:  # the database may be briefly away: try again next tick
            log.exception("dispatcher could not claim accounts")
            return []
        for account_id in claimed:
            try:
                self._pool.submit(self._work, account_id)
            except RuntimeError:  # pool shut down meanwhile: give the claim back
                self._finish(account_id)
        return claimed

    def _work(self, account_id: int) -> None:
        """Fetch the account, then keep claiming the next due one while there is any."""
        next_id: int | None = account_id
        while next_id is not None:
            self._run_one(next_id)
            next_id = None
            if not self._stopping.is_set():
                try:
                    more = self._claim(1)
                except Exception:
                    log.exception("worker could not claim the next account")
                    more = []
                next_id = more[0] if more else None

    def _run_one(self, account_id: int) -> None:
        from ..services import fetching

        try:
            with self.app.app_context():
                fetching.run_claimed(self.app, account_id, self.worker_id)
        except (PopAccountsError, fetching.FetchSkipped, scheduling.LeaseLost):
            pass  # recorded on the account (or nothing to record)
        except Exception:  # fetch_account records crashes too; this is a bug guard
            log.exception("fetch of account %s crashed", account_id)
        finally:
            with self._lock:
                self._in_flight.discard(account_id)

    def _finish(self, account_id: int) -> None:
        try:
            with get_state(self.app).session_factory() as session:
                scheduling.release(session, self.worker_id, account_id)
        finally:
            with self._lock:
                self._in_flight.discard(account_id)


#: Pool connections left for the host's requests beside the fetch workers.
POOL_RESERVE = 2


def _workers_for_pool(app: Flask, wanted: int) -> int:
    """The workers the database pool can serve: one connection each (a fetch uses one
    at a time; lease renewals have a pool of their own), with :data:`POOL_RESERVE` left
    for the host's requests. More workers than that would wait for connections
    (``QueuePool limit ... reached``) and, worse, hold claims they cannot serve."""
    capacity = pool_capacity(get_state(app).engine)
    if capacity is None or wanted <= capacity - POOL_RESERVE:
        return wanted
    workers = max(1, capacity - POOL_RESERVE)
    log.warning("POPACCOUNTS_WORKERS=%d but the database pool gives out %d connections: "
                "running %d workers (raise the pool's pool_size/max_overflow for more)",
                wanted, capacity, workers)
    return workers


def _soon() -> datetime:
    # APScheduler's own timeline: the system's time, whatever clock the app runs on
    return utcnow()


def in_reloader_watcher(app: Flask) -> bool:
    """True in the Werkzeug reloader's watcher process, which never serves requests.

    ``flask run`` with the reloader loads the app in a watcher process that only
    restarts the serving child; Werkzeug sets ``WERKZEUG_RUN_MAIN=true`` in that child
    alone. The app is created inside the ``run`` command, so its click context says
    whether the reloader is on. (``app.run(debug=True)`` decides only after the app is
    built; there both processes start a scheduler and the lease keeps them apart.)
    """
    if os.environ.get("WERKZEUG_RUN_MAIN") == "true":
        return False
    import click
    from flask.helpers import get_debug_flag

    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.command.name != "run":
        return False
    reload = ctx.params.get("reload")
    return bool(get_debug_flag() if reload is None else reload)


def in_other_cli_command() -> bool:
    """True while a ``flask`` command other than ``run`` loads the app.

    ``flask popaccounts db upgrade``, ``flask shell``, ``flask popaccounts fetch`` and the
    like must not start a background scheduler (perhaps on tables not migrated yet);
    ``flask popaccounts scheduler`` starts one explicitly.
    """
    import click

    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.command.name != "run"


def start_in_process(app: Flask, *, explicit: bool = False) -> FetchScheduler | None:
    """Start the scheduler for ``app`` (called by init_app when enabled).

    Returns the running scheduler, or None where an automatic start is wrong: in the
    debug reloader's watcher process, and while a CLI command other than ``flask run``
    loads the app. ``explicit=True`` (``flask popaccounts scheduler``) always starts it.
    """
    state = get_state(app)
    if state.scheduler is not None:
        running: FetchScheduler = state.scheduler
        return running
    if not explicit:
        if in_reloader_watcher(app):
            log.info("not starting the fetch scheduler in the reloader's watcher process")
            return None
        if in_other_cli_command():
            log.debug("not starting the fetch scheduler for a CLI command")
            return None
    sched = FetchScheduler(app)
    state.scheduler = sched
    sched.start()
    return sched
