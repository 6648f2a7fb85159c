"""Two processes in one mailbox (issue 11 item 31): three scheduler processes on one
PostgreSQL, a 2 s lease, a Dovecot *without* a session lock (nothing on the server keeps
two sessions apart). In the middle of a big first sync, the fetching process loses the
database for its leases (renewals, claims, releases fail: a partition, the POP3 server
still reachable), so
its lease runs out and another process takes the account over. The proof:

- the cut-off fetch stops by itself before the lease runs out (the fence: no renewal
  for most of the lease): it ends with LeaseLost before the other process starts, so
  no two fetches of the account ever overlap; its POP3 session (when cut inside one)
  never QUITs and never DELEs (Dovecot's log says so);
- every message is stored once and the mailbox ends up empty (delete after storing);
- each process runs no more fetches at once than its database pool can serve (8
  workers asked for, a pool of 4: 2 workers), so none claims more than it can serve;
- after the burst of first fetches, the next checks are spread, not in one second.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from flask_popaccounts import get_state
from flask_popaccounts.engine.types import DeletePolicy
from flask_popaccounts.storage import migrations
from flask_popaccounts.storage.models import Account, Message
from tests.support.dovecot import Dovecot
from tests.support.flaskapp import dispose, make_app
from tests.support.waiting import LineReader, wait_until

from .conftest import add_account, dovecot_config, messages
from .test_multiprocess_pg import read_log, stop_workers

ROOT = Path(__file__).resolve().parents[2]
N_SMALL = 10
BIG_MESSAGES = 300


@pytest.fixture
def unlocked_dovecot():
    dc = Dovecot(lock_session=False)
    try:
        yield dc
    finally:
        dc.stop()


def _sessions(dovecot: Dovecot, user: str) -> list[str]:
    """How each of the user's POP3 sessions ended, as Dovecot logged it."""
    return re.findall(rf"pop3\({re.escape(user)}\)<\d+><[^>]*>: (?:Info: )?Disconnected: (.*)",
                      dovecot.log())


@pytest.mark.postgres
def test_a_frozen_process_is_fenced_off_and_claims_stay_within_the_pool(
        postgres, unlocked_dovecot, tmp_path):
    dovecot = unlocked_dovecot
    url = postgres.create_database()
    engine = create_engine(url)
    migrations.upgrade(engine)
    engine.dispose()
    control = make_app(url, create=False, **dovecot_config(
        dovecot, POPACCOUNTS_INTERVAL_UNIT_SECONDS=60))
    tag = os.urandom(3).hex()
    big_user = f"fence{tag}-big"
    dovecot.add_user(big_user, "pw")
    dovecot.deliver_many(big_user, messages(big_user, BIG_MESSAGES))
    big = add_account(control, dovecot, big_user, "pw", delete_policy=DeletePolicy.DELETE)
    for i in range(N_SMALL):
        user = f"fence{tag}-{i}"
        dovecot.add_user(user, "pw")
        dovecot.deliver_many(user, messages(user, 5))
        add_account(control, dovecot, user, "pw")

    log_path = tmp_path / "fetches.jsonl"
    env = dict(os.environ, MP_CONFIG=json.dumps({
        "POPACCOUNTS_LEASE_SECONDS": 2, "POPACCOUNTS_WORKERS": 8,
        "POPACCOUNTS_INTERVAL_UNIT_SECONDS": 60,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 4, "max_overflow": 0}}))
    procs = [subprocess.Popen(
        [sys.executable, "-m", "tests.scheduler.mp_worker", url, str(log_path),
         dovecot.ca_file, str(dovecot.pop3s_port), str(big)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(3)]
    try:
        for p in procs:
            assert p.stdout is not None
            reader = LineReader(p.stdout)
            workers = reader.expect(lambda line: line.startswith("WORKERS"), 60, "workers")
            assert workers == "WORKERS 2", (workers, p.stderr.read() if p.stderr else "")
            assert reader.expect(lambda line: line == "READY", 60, "ready") == "READY"

        def fetching_big() -> int | None:
            open_: dict[int, float] = {}
            for r in read_log(log_path):
                if r["account"] == big:
                    if r["event"] == "start":
                        open_[r["pid"]] = r["t"]
                    else:
                        open_.pop(r["pid"], None)
            with get_state(control).session_factory() as s:
                done = s.scalar(select(func.count()).select_from(Message)
                                .where(Message.account_id == big))
            return next(iter(open_)) if open_ and 20 <= done <= BIG_MESSAGES - 100 else None

        pid = wait_until(fetching_big, 60, "the big account in the middle of its sync")
        partition = Path(f"{log_path}.partition.{pid}")
        partition.touch()

        def taken_over() -> bool:
            return any(r["account"] == big and r["event"] == "start" and r["pid"] != pid
                       for r in read_log(log_path))

        wait_until(taken_over, 30, "another process to take the big account over")

        def all_done() -> bool:
            with get_state(control).session_factory() as s:
                rows = s.execute(select(Account.last_success_at, Account.lease_owner)).all()
            return all(r.last_success_at is not None and r.lease_owner is None for r in rows)

        wait_until(all_done, 90, "every account fetched", step=0.3)
        wait_until(lambda: any(r["event"] == "end" and r["pid"] == pid
                               and r["account"] == big for r in read_log(log_path)),
                   30, "the frozen fetch to end")
    finally:
        stop_workers(procs)

    records = read_log(log_path)
    cut_off = [r for r in records
               if r["event"] == "end" and r["pid"] == pid and r["account"] == big]
    assert [r["outcome"] for r in cut_off] == ["LeaseLost"], cut_off
    # No two fetches of one account overlap: the cut-off one ended before the next began.
    spans = collections.defaultdict(list)
    for r in records:
        if r["event"] == "end":
            spans[r["account"]].append((r["start"], r["t"], r["pid"]))
    for aid, account_spans in spans.items():
        account_spans.sort()
        for (_s1, e1, p1), (s2, _e2, p2) in itertools.pairwise(account_spans):
            assert s2 >= e1, f"account {aid}: {p1} until {e1}, {p2} from {s2}"
    # The cut-off session (if cut inside one, not between two) never QUIT and sent no
    # DELE; every other one logged out.
    ended = _sessions(dovecot, big_user)
    unfinished = [e for e in ended if not e.startswith("Logged out")]
    assert len(unfinished) <= 1, ended
    assert all(re.search(r"\bdel=0/", e) for e in unfinished), unfinished
    assert dovecot.server_messages(big_user) == []
    with get_state(control).session_factory() as s:
        dupes = s.execute(select(Message.account_id, Message.uidl, func.count())
                          .group_by(Message.account_id, Message.uidl)
                          .having(func.count() > 1)).all()
        assert dupes == []
        assert s.scalar(select(func.count()).select_from(Message)
                        .where(Message.account_id == big)) == BIG_MESSAGES
        dues = [d for d in s.scalars(select(Account.next_due_at)) if d is not None]
    # No process ran more fetches at once than its 2 workers (claims bounded by them).
    for proc_pid in {r["pid"] for r in records}:
        events = sorted((r["t"], 1 if r["event"] == "start" else -1)
                        for r in records if r["pid"] == proc_pid)
        running = peak = 0
        for _t, step in events:
            running += step
            peak = max(peak, running)
        assert peak <= 2, (proc_pid, peak)
    # Fetched in one burst, due again spread over the interval's last 10% (30 s).
    seconds = collections.Counter(d.replace(microsecond=0) for d in dues)
    assert len(seconds) >= len(dues) // 2, seconds
    dispose(control)
