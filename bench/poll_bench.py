"""Polling benchmark: 1,000 idle accounts, 25 ms one-way latency, one process.

    python -m bench.poll_bench [--accounts 1000] [--delay-ms 25] [--json PATH]
                               [--variant default] [--variant workers=4] ...

What it does:

1. starts a private Dovecot (tests/support/dovecot.py) with N users, one message each;
2. builds a host app (SQLite file, the built-in store) with N accounts on that Dovecot;
3. fills every ledger with one full cycle of the real scheduler, straight to Dovecot
   (not timed), so that afterwards no account has anything new;
4. points every account at a latency proxy (bench/latency_proxy.py, its own process,
   25 ms each way, one round trip before the upstream connect like a TCP handshake),
   makes every account due and starts a fresh scheduler with the default settings
   (POPACCOUNTS_WORKERS, tick): the timed polling cycle ends when every account has
   been polled and its lease released.

Printed: the cycle's wall time (target: under 60 s), polls per second, this process's
CPU seconds (user + system, all threads: dispatcher, workers, TLS, SQLite) per idle
poll, and Dovecot's own CPU for comparison.

Each ``--variant`` is one more timed cycle over the same filled ledgers: ``default``
(the extension's settings) or ``workers=N`` (another pool size).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select, update

from bench.fetch_bench import delay_proxy
from flask_popaccounts import get_state
from flask_popaccounts.config import DEFAULTS
from flask_popaccounts.engine.types import DeletePolicy, Security
from flask_popaccounts.jobs.scheduler import FetchScheduler
from flask_popaccounts.services import accounts as svc
from flask_popaccounts.storage.models import Account
from tests.support.dovecot import Dovecot
from tests.support.flaskapp import dispose, make_app
from tests.support.mail import make_message

PASSWORD = "poll-bench-pw"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def add_users(dc: Dovecot, users: list[str]) -> None:
    """Create many users at once (``Dovecot.add_user`` rewrites every passwd-file per call,
    quadratic for 1,000 users), each with one message."""
    for user in users:
        dc._users[user] = PASSWORD
    dc._write_users()
    for user in users:
        md = dc.maildir(user)
        for sub in ("new", "cur", "tmp"):
            (md / sub).mkdir(parents=True, exist_ok=True)
        for p in [md.parent, md, *(md / s for s in ("new", "cur", "tmp"))]:
            os.chown(p, 65534, 65534)
        dc.deliver(user, make_message(0, subject=f"hello {user}"))


def dovecot_cpu(dc: Dovecot) -> float:
    """CPU seconds used so far by Dovecot's master and its children (reaped or alive)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    proc = dc._proc
    if proc is None:
        return 0.0
    stat = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime, stime, cutime, cstime are fields 14-17 (1-based) of /proc/PID/stat
    total += sum(int(x) for x in stat[11:15]) / tick
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        try:
            cst = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in cst[11:15]) / tick
        except FileNotFoundError:
            pass
    return total


def run_cycle(app: Any, workers: int | None, since: datetime, n: int,
              timeout: float) -> float:
    """Start a scheduler, wait until all ``n`` accounts were polled after ``since``."""
    if workers is not None:
        app.config["POPACCOUNTS_WORKERS"] = workers
    factory = get_state(app).session_factory
    sched = FetchScheduler(app)
    t0 = time.perf_counter()
    sched.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            with factory() as s:
                done = s.scalar(select(func.count()).select_from(Account).where(
                    Account.last_attempt_at >= since, Account.lease_owner.is_(None)))
            if done == n:
                return time.perf_counter() - t0
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done} of {n} accounts polled in {timeout} s")
            time.sleep(0.05)
    finally:
        sched.shutdown(wait=True)


def timed_cycle(app: Any, dc: Dovecot, variant: str, since: datetime, n: int,
                delay_ms: float) -> dict[str, Any]:
    """One timed polling cycle of every account under ``variant``."""
    opts = dict(kv.partition("=")[::2] for kv in variant.split(",") if kv)
    workers = int(opts.get("workers") or DEFAULTS["POPACCOUNTS_WORKERS"])
    app.config["POPACCOUNTS_WORKERS"] = workers
    log(f"timed cycle [{variant}]: {n} idle accounts, {delay_ms} ms one way, "
        f"{workers} workers")
    dc_cpu0 = dovecot_cpu(dc)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    wall = run_cycle(app, None, since, n, 900)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    dc_cpu1 = dovecot_cpu(dc)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    factory = get_state(app).session_factory
    with factory() as s:
        stored_after = s.scalar(select(func.sum(Account.message_count)))
        failures = s.scalar(select(func.count()).select_from(Account)
                            .where(Account.last_error_code.is_not(None)))
    out = {
        "variant": variant, "workers": workers,
        "cycle_seconds": round(wall, 2), "target_seconds": 60,
        "polls_per_second": round(n / wall, 1),
        "ms_per_poll_per_worker": round(wall / n * workers * 1000, 1),
        "cpu_seconds_total": round(cpu, 2),
        "cpu_ms_per_idle_poll": round(cpu / n * 1000, 2),
        "dovecot_cpu_ms_per_poll": round((dc_cpu1 - dc_cpu0) / n * 1000, 2),
        "new_messages_stored": int(stored_after or 0) - n, "failed_polls": failures,
        # other work on the machine skews the figures: the 1-minute load at the end
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    log(f"  {json.dumps(out)}")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--delay-ms", type=float, default=25.0)
    ap.add_argument("--variant", action="append", default=None,
                    help="default | workers=N (repeatable)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = ap.parse_args(argv)
    n = a.accounts
    tmp = Path(tempfile.mkdtemp(prefix="poll-bench-"))
    log(f"starting Dovecot, {n} users with one message each")
    dc = Dovecot(lock_session=False)
    try:
        users = [f"poll{i:04d}" for i in range(n)]
        add_users(dc, users)
        app = make_app(tmp / "host.db",
                       POPACCOUNTS_ALLOWED_POP3_PORTS=(dc.pop3s_port,),
                       POPACCOUNTS_CA_FILE=dc.ca_file)
        factory = get_state(app).session_factory
        with app.app_context(), factory() as s:
            for user in users:
                svc.create_account(app, s, "bench", svc.AccountInput(
                    email=f"{user}@example.net", name=user, send_from="", reply_to="",
                    is_default=False, provider="other", pop_host=dc.host,
                    pop_port=dc.pop3s_port, pop_security=Security.SSL, pop_username=user,
                    password=PASSWORD, delete_policy=DeletePolicy.KEEP))
            s.commit()
        log("filling the ledgers: one cycle straight to Dovecot (not timed)")
        since = datetime.now(timezone.utc)
        fill = run_cycle(app, 16, since, n, 600)
        with factory() as s:
            stored = s.scalar(select(func.sum(Account.message_count)))
        assert stored == n, f"{stored} messages stored, expected {n}"
        log(f"  filled in {fill:.1f} s ({stored} messages)")

        cycles = []
        with delay_proxy(dc.pop3s_port, a.delay_ms) as port:
            app.config["POPACCOUNTS_ALLOWED_POP3_PORTS"] = (dc.pop3s_port, port)
            for variant in a.variant or ["default"]:
                since = datetime.now(timezone.utc)
                with factory() as s:
                    s.execute(update(Account).values(pop_port=port, next_due_at=since))
                    s.commit()
                cycles.append(timed_cycle(app, dc, variant, since, n, a.delay_ms))
        result = {
            "accounts": n, "delay_ms_one_way": a.delay_ms,
            "default_workers": DEFAULTS["POPACCOUNTS_WORKERS"],
            "tick_seconds": app.config["POPACCOUNTS_SCHEDULER_TICK_SECONDS"],
            "fill_cycle_seconds_direct_16_workers": round(fill, 1),
            "cpus": os.cpu_count(), "cycles": cycles,
        }
        dispose(app)
    finally:
        dc.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
