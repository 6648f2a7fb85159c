"""One scheduler process of the multi-process test (a small host app, nothing else).

    python -m tests.scheduler.mp_worker DB_URL LOG_PATH CA_FILE PORT [SLOW_IDS]

Builds the test host app on DB_URL with the in-process scheduler enabled (it starts
from ``init_app``, as in a real host), and wraps ``services.fetching.fetch_account`` so
that every fetch appends ``start`` and ``end`` records (pid, account, wall-clock time,
outcome) to LOG_PATH, one JSON object per line, each with a single O_APPEND write.
Accounts listed in SLOW_IDS (comma separated) take 20 ms per message, as over a slow
line, so that a fetch can be caught in progress. ``MP_CONFIG`` (JSON, optional) adds
or overrides config keys. Creating ``LOG_PATH.partition.PID`` cuts that process's lease
renewals, claims and releases off the database. Prints ``WORKERS n``, ``READY`` and runs
until killed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any


def main(argv: list[str]) -> int:
    url, log_path, ca_file, port = argv[:4]
    slow_ids = {int(x) for x in argv[4].split(",") if x} if len(argv) > 4 else set()

    from flask_popaccounts.services import fetching
    from tests.support.flaskapp import make_app

    pid = os.getpid()
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(record: dict[str, Any]) -> None:
        os.write(fd, (json.dumps(record) + "\n").encode())

    original = fetching.fetch_account

    def recorded(app: Any, account_id: int, *, progress: Any = None, **kw: Any) -> Any:
        started = time.time()
        write({"pid": pid, "account": account_id, "event": "start", "t": started})

        def on_progress(p: Any) -> None:
            if account_id in slow_ids:
                time.sleep(0.02)  # the behaviour under test: a slow line
            if progress is not None:
                progress(p)

        outcome = "ok"
        try:
            return original(app, account_id, progress=on_progress, **kw)
        except BaseException as exc:
            outcome = type(exc).__name__
            raise
        finally:
            write({"pid": pid, "account": account_id, "event": "end", "start": started,
                   "t": time.time(), "outcome": outcome})

    fetching.fetch_account = recorded  # type: ignore[assignment]

    # A network partition between this process and the database's lease renewals
    # (the POP3 server still reachable): once LOG_PATH.partition.PID exists, every
    # renewal fails as if the database were unreachable.
    from sqlalchemy.exc import OperationalError

    from flask_popaccounts.services import leases, scheduling

    partition = f"{log_path}.partition.{pid}"

    def cut_off(module: Any, name: str) -> None:
        real = getattr(module, name)

        def unless_partitioned(*args: Any, **kw: Any) -> Any:
            if os.path.exists(partition):
                raise OperationalError(name, {}, Exception("database unreachable"))
            return real(*args, **kw)

        setattr(module, name, unless_partitioned)

    cut_off(leases, "renew_ids")  # renewals, and claims and releases of leases
    for name in ("claim_due", "claim", "release"):
        cut_off(scheduling, name)
    config: dict[str, Any] = dict(
        POPACCOUNTS_SCHEDULER_ENABLED=True,
        POPACCOUNTS_SCHEDULER_TICK_SECONDS=0.3,
        POPACCOUNTS_WORKERS=3,
        POPACCOUNTS_LEASE_SECONDS=5,
        POPACCOUNTS_MAX_MESSAGES_PER_SESSION=50,
        POPACCOUNTS_ALLOWED_POP3_PORTS=(int(port),),
        POPACCOUNTS_CA_FILE=ca_file,
        POPACCOUNTS_CONNECT_TIMEOUT=5,
        POPACCOUNTS_READ_TIMEOUT=20,
    )
    config.update(json.loads(os.environ.get("MP_CONFIG") or "{}"))
    app = make_app(url, create=False, **config)
    print(f"WORKERS {app.extensions['popaccounts'].scheduler.workers}", flush=True)
    sched = app.extensions["popaccounts"].scheduler
    assert sched is not None and sched.running
    print("READY", flush=True)

    def stop(signum: int, frame: Any) -> None:
        sched.shutdown(wait=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    while True:
        signal.pause()  # the scheduler's threads do the work; wait for SIGTERM


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
