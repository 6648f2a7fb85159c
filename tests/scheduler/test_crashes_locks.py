"""Crashes, clocks and locks (issue 11, items 21, 23-25, 27, 28, 31) on SQLite files and
the session Dovecot: leases on the database's clock, short and fenced; stale progress
cleared (a CLI fetch killed with SIGKILL: the next one exits 75 until the lease runs
out, then takes over); the heartbeat's own connection; no write transaction across
network I/O; the quota of one owner held by two accounts fetching at once; every
connection tuned; a host's raising receiver ignored."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import OperationalError

from flask_popaccounts import PopAccounts, get_state
from flask_popaccounts.config import DEFAULTS
from flask_popaccounts.engine.types import DeletePolicy
from flask_popaccounts.services import fetching, progress, scheduling
from flask_popaccounts.signals import message_fetched
from flask_popaccounts.storage.models import Account, AccountStatus, Message
from tests.support.clock import FakeClock, use_clock
from tests.support.flaskapp import dispose, make_app
from tests.support.waiting import wait_until

from .conftest import OWNER, account, add_account, dovecot_config, messages

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_take_a_crashed_fetch_over_within_a_minute():
    assert DEFAULTS["POPACCOUNTS_LEASE_SECONDS"] == 60
    hb = scheduling.LeaseHeartbeat(None, "me", 1, 60)  # type: ignore[arg-type]
    assert hb.interval == 15  # renewed by the shared heartbeat every 15 s
    assert hb.fence_seconds == 45  # and a fetch that could not renew stops by then


def test_leases_run_on_the_database_clock_not_a_skewed_app_clock(sched_app, dovecot,
                                                                  new_user):
    # Two app servers on one database, one with its clock an hour ahead: it must still
    # see the other's live lease, and its own lease must not look an hour long.
    app = sched_app()
    user, pw = new_user
    aid = add_account(app, dovecot, user, pw)
    ahead = FakeClock()
    ahead.advance(3600)
    use_clock(app, ahead)
    factory = get_state(app).session_factory
    with factory() as s:
        assert scheduling.claim(s, "server-a", aid, 60)
        assert scheduling.claim_due(s, "server-b", 5, 60, now=ahead()) == []
        assert scheduling.lease_is_live(s, aid)
        expires = s.scalar(select(Account.lease_expires_at).where(Account.id == aid))
        db_now = s.scalar(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"))
    assert abs((expires - timedelta(seconds=60)).replace(tzinfo=None)
               - _parse(db_now)) < timedelta(seconds=5)
    assert fetching.check_now(app, aid) is False  # "already being checked"


def _parse(value: str):
    from datetime import datetime

    return datetime.strptime(value, "%Y-%m-%d %H:%M:%S.%f")


def test_a_fetch_that_cannot_renew_its_lease_stops_before_its_next_command(tmp_path):
    class Away:  # the database is unreachable for renewals
        def __call__(self):
            raise OperationalError("renew", {}, Exception("database away"))

    with scheduling.LeaseHeartbeat(Away(), "me", 1, 1.0, interval=0.1) as hb:  # type: ignore[arg-type]
        hb.check()  # just claimed: fine
        wait_until(lambda: _raises(hb.check), 5, "the fence to fall")
    assert hb.lost and hb.renewals == 0


def test_a_claim_taken_over_while_it_waited_for_a_worker_never_logs_in(sched_app, dovecot,
                                                                       new_user):
    # The dispatcher claimed the account, the claim waited in the queue past its lease,
    # and another process took the account over: the late worker must not log in.
    app = sched_app()
    user, pw = new_user
    aid = add_account(app, dovecot, user, pw)
    dovecot.deliver_many(user, messages(user, 3))
    factory = get_state(app).session_factory
    with factory() as s:
        assert scheduling.claim(s, "late-worker", aid, 60)
        s.execute(update(Account).where(Account.id == aid).values(lease_owner="other-process"))
        s.commit()
    logins_before = dovecot.log().count(f"Login: user=<{user}>")
    with pytest.raises(scheduling.LeaseLost):
        fetching.run_claimed(app, aid, "late-worker")
    assert dovecot.log().count(f"Login: user=<{user}>") == logins_before
    with factory() as s:
        row = s.get(Account, aid)
        assert row is not None and row.lease_owner == "other-process"  # not released by us
        assert s.scalar(select(Message.id).where(Message.account_id == aid)) is None


def _raises(check) -> bool:
    try:
        check()
    except scheduling.LeaseLost:
        return True
    return False


def test_a_crashed_fetchs_frozen_progress_goes_with_its_lease(sched_app, dovecot, new_user):
    app = sched_app(POPACCOUNTS_LEASE_SECONDS=60)
    user, pw = new_user
    dovecot.deliver_many(user, messages(user, 5))
    aid = add_account(app, dovecot, user, pw)
    factory = get_state(app).session_factory
    # A process claimed the account with a short lease, wrote its progress, then died.
    with factory() as s:
        assert scheduling.claim(s, "crashed-host:123:x", aid, 1.0)
        s.execute(update(Account).where(Account.id == aid).values(
            progress_started_at=get_state(app).clock(), progress_done=40,
            progress_total=200))
        s.commit()
    shown = progress.fetch_progress(aid, app)
    assert shown is not None and shown["running"] and shown["done"] == 40
    wait_until(lambda: progress.fetch_progress(aid, app) is None, 10,
               "the frozen bar to go once the dead lease ran out")
    with factory() as s:  # taken over by the next claim, which clears the old figures
        assert scheduling.claim_due(s, "survivor", 5, 60) == [aid]
        acc = s.get(Account, aid)
        assert acc.progress_done is None and acc.progress_total is None
    assert fetching.run_claimed(app, aid, "survivor").stored == 5
    acc = account(app, aid)
    assert acc.message_count == 5 and acc.lease_owner is None


def test_sqlite_settings_reach_a_connection_the_host_opened_first(tmp_path):
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy

    app = Flask("host")
    app.config.update(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'host.db'}",
                      SECRET_KEY="k", TESTING=True, POPACCOUNTS_SQLITE_BUSY_TIMEOUT=7.5,
                      SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0})
    db = SQLAlchemy(app)
    with app.app_context():
        with db.engine.connect() as conn:  # the host's first connection, before init
            conn.execute(text("SELECT 1"))
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 0
    PopAccounts(app, db=db)
    engine = get_state(app).engine
    with engine.connect() as conn:  # the same pooled connection (pool of one)
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 7500
    with app.app_context(), db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


def test_a_raising_receiver_is_logged_and_the_fetch_goes_on(sched_app, dovecot, new_user,
                                                            caplog):
    app = sched_app(POPACCOUNTS_MAX_MESSAGES_PER_SESSION=4)
    user, pw = new_user
    dovecot.deliver_many(user, messages(user, 10))
    aid = add_account(app, dovecot, user, pw, delete_policy=DeletePolicy.DELETE)
    calls: list[int] = []

    def buggy(sender, **kw):
        calls.append(kw["message_id"])
        raise RuntimeError("host bug")

    message_fetched.connect(buggy, sender=app)
    try:
        with caplog.at_level(logging.ERROR, logger="flask_popaccounts.signals"):
            report = fetching.fetch_account(app, aid)
    finally:
        message_fetched.disconnect(buggy, sender=app)
    assert report.stored == 10 and report.deleted == 10  # every session, every DELE
    assert len(calls) == 10
    assert dovecot.server_messages(user) == []
    acc = account(app, aid)
    assert acc.status == AccountStatus.OK.value and acc.consecutive_failures == 0
    assert "a receiver of the popaccounts.message-fetched signal raised" in caplog.text
    assert "host bug" in caplog.text


def _done(app, account_id: int) -> int:
    return int((progress.fetch_progress(account_id, app) or {}).get("done", 0))


def _slow_fetches(app, ids: list[int], delay: float) -> list[threading.Thread]:
    def run(aid: int) -> None:
        try:
            fetching.fetch_account(app, aid, progress=lambda p: time.sleep(delay))
        except Exception:
            pass

    threads = [threading.Thread(target=run, args=(aid,)) for aid in ids]
    for t in threads:
        t.start()
    return threads


@pytest.mark.parametrize("count,body_size,delay", [(120, 200, 0.05), (10, 1_300_000, 0.4)],
                         ids=["small", "over-a-chunk"])
def test_sqlite_a_save_succeeds_promptly_while_two_accounts_fetch(
        sched_app, dovecot, new_user, count, body_size, delay):
    # A short busy timeout: a write that had to wait for a fetch's transaction would
    # fail with "database is locked" instead of passing late. Small messages are
    # buffered until the group commit; those over a chunk (1 MiB) are written as they
    # come: neither may hold the write lock while the next ones are read.
    app = sched_app(POPACCOUNTS_SQLITE_BUSY_TIMEOUT=3)
    ids = []
    for i in range(2):
        user, pw = f"{new_user[0]}x{i}", "pw"
        dovecot.add_user(user, pw)
        dovecot.deliver_many(user, messages(user, count, body_size=body_size))
        ids.append(add_account(app, dovecot, user, pw))
    threads = _slow_fetches(app, ids, delay)  # ~4-6 s each, like a slow line
    factory = get_state(app).session_factory
    wait_until(lambda: all(_done(app, a) >= 2 for a in ids), 30, "both fetches under way")
    slowest = 0.0
    for n in range(5):  # the user saves a settings page, several times
        started = time.monotonic()
        with factory() as s:
            s.execute(update(Account).where(Account.id == ids[0])
                      .values(name=f"Renamed {n}"))
            s.commit()
        slowest = max(slowest, time.monotonic() - started)
        # the next save meets the fetch a message further on
        done = _done(app, ids[0])
        wait_until(lambda d=done: _done(app, ids[0]) > d or not threads[0].is_alive(), 30,
                   "the fetch to store another message")
    assert all(t.is_alive() for t in threads)  # the saves really met running fetches
    assert slowest < 1.0, slowest
    for t in threads:
        t.join(60)
    assert [account(app, a).message_count for a in ids] == [count, count]
    assert account(app, ids[0]).name == "Renamed 4"


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql",
                                                           marks=pytest.mark.postgres)])
def test_two_accounts_of_one_owner_fetching_at_once_stay_within_the_quota(
        sched_app, dovecot, new_user, request, backend):
    size = len(messages("q", 1, body_size=4000)[0])
    quota = 12 * size + size // 2
    if backend == "sqlite":
        app = sched_app(POPACCOUNTS_QUOTA_BYTES=quota)
    else:  # the owner's lock is an advisory lock there
        url = request.getfixturevalue("postgres").create_database()
        app = make_app(url, **dovecot_config(dovecot, POPACCOUNTS_QUOTA_BYTES=quota))
        request.addfinalizer(lambda: dispose(app))
    ids = []
    for i in range(2):
        user, pw = f"{new_user[0]}q{i}", "pw"
        dovecot.add_user(user, pw)
        dovecot.deliver_many(user, messages(user, 10, body_size=4000))
        ids.append(add_account(app, dovecot, user, pw))
    barrier = threading.Barrier(2)

    def run(aid: int) -> None:
        barrier.wait()
        try:
            fetching.fetch_account(app, aid)
        except Exception:
            pass

    threads = [threading.Thread(target=run, args=(aid,)) for aid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with get_state(app).session_factory() as s:
        stored = s.scalars(select(Message.size).join(Account)
                           .where(Account.owner_id == OWNER)).all()
        counted = sum(a.bytes_stored for a in s.scalars(select(Account)))
    assert sum(stored) == counted
    assert sum(stored) <= quota + max(stored)  # never over by more than one message
    assert sum(stored) <= quota
    assert any(account(app, a).status == AccountStatus.PAUSED_QUOTA.value for a in ids)


def test_next_checks_are_spread(sched_app, dovecot, new_user):
    app = sched_app(POPACCOUNTS_INTERVAL_UNIT_SECONDS=60)
    user, pw = new_user
    ids = [add_account(app, dovecot, user, pw, email=f"{user}-{i}@example.net")
           for i in range(6)]
    clock = use_clock(app, FakeClock()) and get_state(app).clock
    for aid in ids:
        fetching.fetch_account(app, aid)
    dues = [account(app, a).next_due_at for a in ids]
    now = clock()
    for due in dues:  # within the interval (5 min), at most 10% early
        assert timedelta(minutes=4.5) <= due - now <= timedelta(minutes=5)
    assert len({d.replace(microsecond=0) for d in dues}) >= 4  # not in lock-step


def test_the_heartbeat_renews_while_every_pooled_connection_is_busy(sched_app, dovecot,
                                                                    new_user):
    app = sched_app(SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0,
                                               "pool_timeout": 1})
    user, pw = new_user
    aid = add_account(app, dovecot, user, pw)
    state = get_state(app)
    with state.session_factory() as s:
        assert scheduling.claim(s, "me", aid, 60)
    with state.engine.connect() as busy:  # the pool's only connection, held by a "fetch"
        busy.execute(text("SELECT 1"))
        with pytest.raises(Exception, match="QueuePool limit"):
            with state.session_factory() as s:
                s.execute(text("SELECT 1"))
        hb = scheduling.LeaseHeartbeat(state.heartbeat_factory, "me", aid, 60)
        assert hb.beat() and hb.renewals == 1


def test_after_a_sigkill_the_cli_says_busy_then_the_account_is_taken_over(
        sched_app, dovecot, new_user):
    config = dict(POPACCOUNTS_LEASE_SECONDS=2, POPACCOUNTS_MAX_MESSAGES_PER_SESSION=10)
    app = sched_app(**config)
    user, pw = new_user
    dovecot.deliver_many(user, messages(user, 60))
    aid = add_account(app, dovecot, user, pw)
    worker_config = {k: list(v) if isinstance(v, tuple) else v for k, v in app.config.items()
                     if k.startswith("POPACCOUNTS_") and isinstance(
                         v, (str, int, float, bool, tuple, type(None)))}
    victim = subprocess.Popen(
        [sys.executable, "-m", "tests.scheduler.cli_worker",
         app.config["SQLALCHEMY_DATABASE_URI"], str(aid), json.dumps(worker_config)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (account(app, aid).progress_done or 0) >= 10, 60,
                   "the CLI fetch in another process under way (its progress on the row)",
                   detail=lambda: victim.poll())
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    frozen = progress.fetch_progress(aid, app)
    assert frozen is not None and frozen["running"] and 10 <= frozen["done"] < 60
    cli = app.test_cli_runner()
    result = cli.invoke(args=["popaccounts", "fetch", "--account", str(aid)])
    assert result.exit_code == 75, result.output  # not fetched: busy (the dead one's lease)
    assert "being fetched elsewhere" in result.output
    # The dead process's lease runs out on the database's clock: the bar goes...
    wait_until(lambda: progress.fetch_progress(aid, app) is None, 10,
               "the crashed fetch's frozen bar to go with its lease")
    # ...and the next fetch takes over and finishes, nothing stored twice.
    result = cli.invoke(args=["popaccounts", "fetch", "--account", str(aid)])
    assert result.exit_code == 0, result.output
    with get_state(app).session_factory() as s:
        uidls = s.scalars(select(Message.uidl).where(Message.account_id == aid)).all()
    assert len(uidls) == len(set(uidls)) == 60
    acc = account(app, aid)
    assert acc.lease_owner is None and acc.progress_done is None


def test_two_claims_at_once_never_take_more_accounts_than_free_workers(sched_app, dovecot,
                                                                       monkeypatch):
    # The dispatcher and a worker that just finished ask for accounts at the same
    # moment: with one free worker, only one account may be claimed between them
    # (an extra one would wait in the queue while its lease runs out).
    from flask_popaccounts.jobs.scheduler import FetchScheduler

    app = sched_app(POPACCOUNTS_WORKERS=1)
    for i in range(3):
        add_account(app, dovecot, f"nobody{i}", "x")
    sched = FetchScheduler(app)
    inside = threading.Barrier(2, timeout=1)
    real = scheduling.claim_due

    def slow_claim(*args, **kw):
        try:
            inside.wait()  # both claimers inside at once (only if both got a slot)
        except threading.BrokenBarrierError:
            pass
        return real(*args, **kw)

    monkeypatch.setattr(scheduling, "claim_due", slow_claim)
    results: list[list[int]] = []
    threads = [threading.Thread(target=lambda: results.append(sched._claim(1)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(len(r) for r in results) == [0, 1]
    assert len(sched.in_flight) == 1
