"""Three scheduler processes, one PostgreSQL, 30 Dovecot accounts; one process is killed.

Each process is ``tests/scheduler/mp_worker.py``: the test host app with the in-process
scheduler enabled (3 workers, 0.3 s tick, 5 s lease), its fetches recorded as
intervals in a JSONL file. The proof:

- every account is fetched, every message stored once (no (account, UIDL) twice,
  Message-IDs and byte counts equal to what was delivered);
- no account is ever fetched by two processes at once (intervals never overlap);
- the process killed with SIGKILL in the middle of a fetch loses its accounts only
  until the lease expires; they are then taken over and finished;
- progress of a fetch running in a worker process is visible from this process.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from email.parser import BytesHeaderParser
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from flask_popaccounts import get_state
from flask_popaccounts.services import progress
from flask_popaccounts.storage import migrations
from flask_popaccounts.storage.models import Account, Message, UidlEntry
from tests.support.flaskapp import dispose, make_app
from tests.support.waiting import LineReader, wait_until

from .conftest import add_account, dovecot_config, messages

ROOT = Path(__file__).resolve().parents[2]
N_ACCOUNTS = 30
BIG = 3  # accounts with enough mail (and a slow line) to be caught mid-fetch
BIG_MESSAGES = 240
SMALL_MESSAGES = 20


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every worker still running, then wait (SIGKILL one that will not stop)."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.postgres
def test_three_processes_30_accounts_one_killed_mid_fetch(postgres, dovecot, tmp_path):
    url = postgres.create_database()
    engine = create_engine(url)
    migrations.upgrade(engine)  # the packaged migrations, as a host would
    engine.dispose()
    control = make_app(url, create=False, **dovecot_config(dovecot))

    delivered: dict[int, list[bytes]] = {}
    tag = os.urandom(3).hex()
    for i in range(N_ACCOUNTS):
        user = f"mp{tag}-{i}"
        dovecot.add_user(user, f"pw-{i}")
        mail = messages(user, BIG_MESSAGES if i < BIG else SMALL_MESSAGES)
        dovecot.deliver_many(user, mail)
        aid = add_account(control, dovecot, user, f"pw-{i}")
        delivered[aid] = mail
    big_ids = sorted(delivered)[:BIG]

    log_path = tmp_path / "fetches.jsonl"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.scheduler.mp_worker", url, str(log_path),
             dovecot.ca_file, str(dovecot.pop3s_port), ",".join(map(str, big_ids))],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    victim = None
    kill_time = 0.0
    try:
        for p in procs:
            assert p.stdout is not None
            ready = LineReader(p.stdout).expect(lambda line: line == "READY", 60,
                                                f"scheduler process {p.pid} to be ready")
            assert ready == "READY", (p.poll(), p.stderr.read() if p.stderr else "")
        by_pid = {p.pid: p for p in procs}

        # Wait for a big account to be well into its fetch in some process; meanwhile
        # watch its progress from here (another process, same database).
        seen_progress: list[dict] = []

        def mid_fetch() -> tuple[int, int] | None:
            for aid in big_ids:
                info = progress.fetch_progress(aid, app=control)
                if info and info["running"] and info["done"]:
                    seen_progress.append(info)
            open_: dict[tuple[int, int], float] = {}
            for r in read_log(log_path):
                key = (r["pid"], r["account"])
                if r["event"] == "start":
                    open_[key] = r["t"]
                else:
                    open_.pop(key, None)
            # Well into it: a fair part of the mailbox stored, most of it still to come.
            for (pid, aid) in open_:
                info = progress.fetch_progress(aid, app=control)
                if (aid in big_ids and info and info["running"]
                        and 30 <= info["done"] <= BIG_MESSAGES - 60):
                    return pid, aid
            return None

        pid, caught = wait_until(mid_fetch, 30, "a big account in the middle of a fetch")
        victim = by_pid[pid]
        kill_time = time.time()
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        assert seen_progress, "no progress seen from another process"
        assert any(0 < p["done"] < BIG_MESSAGES for p in seen_progress), seen_progress

        def all_done() -> bool:
            with get_state(control).session_factory() as s:
                rows = s.execute(select(Account.id, Account.last_success_at,
                                        Account.lease_owner, Account.message_count)).all()
            return all(r.last_success_at is not None and r.lease_owner is None
                       and r.message_count == len(delivered[r.id]) for r in rows)

        wait_until(all_done, 60, "every account fetched", step=0.3)
    finally:
        stop_workers(procs)

    records = read_log(log_path)
    assert victim is not None
    # -- no account fetched by two processes at once --------------------------------
    intervals: dict[int, list[tuple[float, float, int, str]]] = collections.defaultdict(list)
    ends = {(r["pid"], r["account"], r["start"]): r for r in records if r["event"] == "end"}
    for r in records:
        if r["event"] != "start":
            continue
        end = ends.get((r["pid"], r["account"], r["t"]))
        if end is None:
            assert r["pid"] == victim.pid, r  # only the killed process left fetches open
            intervals[r["account"]].append((r["t"], kill_time, r["pid"], "killed"))
        else:
            intervals[r["account"]].append((r["t"], end["t"], r["pid"], end["outcome"]))
    assert set(intervals) == set(delivered)
    for aid, spans in intervals.items():
        spans.sort()
        for (_s1, e1, p1, _), (s2, _e2, p2, _) in itertools.pairwise(spans):
            assert s2 >= e1, f"account {aid}: {p1} until {e1}, {p2} from {s2}"
    # -- the killed process's accounts were taken over after its lease expired ------
    killed = [aid for aid, spans in intervals.items() if any(x[3] == "killed" for x in spans)]
    assert caught in killed
    for aid in killed:
        later = [x for x in intervals[aid] if x[0] > kill_time]
        assert later and later[-1][3] == "ok" and later[0][2] != victim.pid, intervals[aid]
        # the lease (5 s, renewed every 5/3 s) had to run out first
        assert later[0][0] >= kill_time + 2.5, (later[0][0] - kill_time, intervals[aid])
    takeover = [round(min(x[0] for x in intervals[a] if x[0] > kill_time) - kill_time, 2)
                for a in killed]
    print(f"killed pid {victim.pid} mid-fetch of {killed}; taken over after {takeover} s; "
          f"progress seen here: {[(p['done'], p['total']) for p in seen_progress][:8]}")
    workers = {x[2] for spans in intervals.values() for x in spans if x[3] == "ok"}
    assert len(workers) >= 2
    # -- every message stored exactly once ------------------------------------------
    with get_state(control).session_factory() as s:
        dupes = s.execute(select(Message.account_id, Message.uidl, func.count())
                          .group_by(Message.account_id, Message.uidl)
                          .having(func.count() > 1)).all()
        assert dupes == []
        parser = BytesHeaderParser()
        for aid, mail in delivered.items():
            rows = s.execute(select(Message.message_id, Message.size)
                             .where(Message.account_id == aid)).all()
            want = sorted(str(parser.parsebytes(m)["Message-ID"]) for m in mail)
            assert sorted(r.message_id for r in rows) == want, aid
            assert sum(r.size for r in rows) == sum(len(m) for m in mail), aid
            ledger = s.scalar(select(func.count()).select_from(UidlEntry)
                              .where(UidlEntry.account_id == aid))
            assert ledger == len(mail)
    dispose(control)
