"""Fetching on a schedule inside the host process (APScheduler 3.x).

One ``BackgroundScheduler`` runs two jobs:

- the dispatcher, every ``POPACCOUNTS_SCHEDULER_TICK_SECONDS``: claims as many due
  accounts as there are free workers (services.scheduling.claim_due) and hands each
  to a bounded thread pool (``POPACCOUNTS_WORKERS``), where it is fetched inside an
  app context by services.fetching.fetch_account and its lease released;
- the lease keeper, every third of ``POPACCOUNTS_LEASE_SECONDS``: renews the leases of
  the accounts this process is still fetching, so a long first sync keeps its claim,
  and a crashed process loses its claims when they expire.

Several gunicorn workers, the debug reloader's two processes or several machines on one
PostgreSQL database may all run this; the lease makes sure each account is fetched by
one of them at a time. ``flask popaccounts scheduler`` runs it alone in the foreground.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

from .extension import get_state
from .services import scheduling

log = logging.getLogger("flask_popaccounts.scheduler")


class FetchScheduler:
    """The dispatcher, the worker pool and the lease keeper for one app."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        cfg = app.config
        self.workers = max(1, int(cfg["POPACCOUNTS_WORKERS"]))
        self.tick = float(cfg["POPACCOUNTS_SCHEDULER_TICK_SECONDS"])
        self.lease_seconds = int(cfg["POPACCOUNTS_LEASE_SECONDS"])
        self.worker_id = scheduling.new_worker_id()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="popaccounts-fetch")
        self._in_flight: set[int] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._scheduler = BackgroundScheduler(daemon=True)

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        self._scheduler.add_job(self.dispatch, "interval", seconds=self.tick, id="dispatch",
                                max_instances=1, coalesce=True, next_run_time=_soon())
        self._scheduler.add_job(self.keep_leases, "interval",
                                seconds=max(1.0, self.lease_seconds / 3), id="leases",
                                max_instances=1, coalesce=True)
        self._scheduler.start()
        log.info("scheduler %s started: %d workers, tick %ss", self.worker_id, self.workers,
                 self.tick)

    def shutdown(self, wait: bool = True) -> None:
        self._scheduler.shutdown(wait=wait)
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

    def poke(self) -> None:
        """Run the dispatcher now (after "check now"), instead of at the next tick."""
        try:
            self._scheduler.modify_job("dispatch", next_run_time=_soon())
        except Exception:  # the scheduler may be shutting down
            log.debug("could not poke the dispatcher", exc_info=True)

    # -- jobs --------------------------------------------------------------------
    def dispatch(self) -> list[int]:
        state = get_state(self.app)
        with self._lock:
            free = self.workers - len(self._in_flight)
        if free <= 0:
            return []
        with state.session_factory() as session:
            claimed = scheduling.claim_due(session, self.worker_id, free, self.lease_seconds)
        for account_id in claimed:
            with self._lock:
                self._in_flight.add(account_id)
            self._pool.submit(self._run_one, account_id)
        return claimed

    def keep_leases(self) -> None:
        with self._lock:
            ids = set(self._in_flight)
        if not ids:
            return
        with get_state(self.app).session_factory() as session:
            scheduling.renew(session, self.worker_id, ids, self.lease_seconds)

    def _run_one(self, account_id: int) -> None:
        from .services.fetching import fetch_account

        try:
            with self.app.app_context():
                fetch_account(self.app, account_id)
        except Exception:  # fetch_account records named failures; this is a bug guard
            log.exception("fetch of account %s crashed", account_id)
        finally:
            try:
                with get_state(self.app).session_factory() as session:
                    scheduling.release(session, self.worker_id, account_id)
            finally:
                with self._lock:
                    self._in_flight.discard(account_id)


def _soon() -> datetime:
    return datetime.now(timezone.utc)


def start_in_process(app: Flask) -> FetchScheduler:
    """Start the scheduler for ``app`` (called by init_app when enabled)."""
    state = get_state(app)
    if state.scheduler is not None:
        return state.scheduler  # type: ignore[no-any-return]
    sched = FetchScheduler(app)
    state.scheduler = sched
    sched.start()
    return sched
