"""The in-process scheduler really running against a real Dovecot (SQLite host database).

Ticks of 0.3 s and an interval "minute" of one second (POPACCOUNTS_INTERVAL_UNIT_SECONDS)
make the schedule observable in a few seconds.
"""

from __future__ import annotations

import itertools
import threading
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import update

from flask_popaccounts import get_state, signals
from flask_popaccounts.engine.types import Progress
from flask_popaccounts.jobs.scheduler import start_in_process
from flask_popaccounts.services import fetching, health, progress, scheduling
from flask_popaccounts.storage import mailbox
from flask_popaccounts.storage.models import Account, AccountStatus
from tests.conftest import fresh_source_address
from tests.support.clock import use_clock
from tests.support.dovecot import free_port
from tests.support.waiting import wait_until
from tests.web.conftest import PREFIX, account_form

from .conftest import OWNER, account, add_account, logins, messages


def count(app, account_id: int) -> int:
    with get_state(app).session_factory() as session:
        return mailbox.count_messages(session, account_id)


class Recorder:
    """Collects (signal name, account_id, monotonic time, thread name, kwargs)."""

    NAMES = ("account_fetched", "account_failed", "account_disabled", "account_recovered")

    def __init__(self) -> None:
        self.events: list[tuple[str, int, float, str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._handlers: list[Any] = []

    def __enter__(self) -> Recorder:
        for name in self.NAMES:
            def handler(sender: Any, _name: str = name, **kw: Any) -> None:
                with self._lock:
                    self.events.append((_name, kw["account_id"], time.monotonic(),
                                        threading.current_thread().name, kw))
            getattr(signals, name).connect(handler, weak=False)
            self._handlers.append((name, handler))
        return self

    def __exit__(self, *exc: object) -> None:
        for name, handler in self._handlers:
            getattr(signals, name).disconnect(handler)

    def times(self, name: str, account_id: int) -> list[float]:
        with self._lock:
            return [t for n, a, t, _, _ in self.events if n == name and a == account_id]

    def of(self, name: str, account_id: int) -> list[tuple[str, int, float, str, dict]]:
        with self._lock:
            return [e for e in self.events if e[0] == name and e[1] == account_id]


def test_due_accounts_are_fetched_new_mail_appears_intervals_are_honoured(
        sched_app, dovecot, new_user):
    app = sched_app()
    fast_user, fast_pw = new_user
    slow_user, slow_pw = f"{fast_user}-slow", "slow-secret"
    dovecot.add_user(slow_user, slow_pw)
    dovecot.deliver_many(fast_user, messages(fast_user, 3))
    dovecot.deliver_many(slow_user, messages(slow_user, 3))
    fast = add_account(app, dovecot, fast_user, fast_pw, fetch_interval_minutes=3)  # 3 s
    slow = add_account(app, dovecot, slow_user, slow_pw, fetch_interval_minutes=60)  # 60 s
    with Recorder() as rec:
        sched = start_in_process(app)
        assert sched is not None and sched.running
        wait_until(lambda: count(app, fast) == 3 and count(app, slow) == 3, 10, "first fetch")
        dovecot.deliver_many(fast_user, messages(fast_user, 2, start=3))
        dovecot.deliver_many(slow_user, messages(slow_user, 2, start=3))
        # New mail shows up at the fast account's next due time, by itself.
        wait_until(lambda: count(app, fast) == 5, 8, "new mail on the fast account")
        wait_until(lambda: len(rec.times("account_fetched", fast)) >= 3, 8, "a third poll")
        # The slow account (60 s interval) is not polled again meanwhile.
        assert count(app, slow) == 3
        assert len(rec.times("account_fetched", slow)) == 1
        fetched = rec.times("account_fetched", fast)
        gaps = [b - a for a, b in itertools.pairwise(fetched)]
        assert all(2.5 <= g <= 3 + 0.3 + 2.0 for g in gaps), gaps  # interval +- tick/slack
        # Every fetch ran in the scheduler's pool and left the lease free.
        assert all(e[3].startswith("popaccounts-fetch") for e in rec.events), rec.events
    acc = account(app, fast)
    assert acc.status == AccountStatus.OK.value and acc.progress_started_at is None
    assert acc.next_due_at is not None and acc.last_success_at is not None
    # the interval, up to 10% early (the jitter that spreads accounts polled together)
    assert 2.7 - 0.01 <= (acc.next_due_at - acc.last_success_at).total_seconds() <= 3.0


def login_client(app):
    client = app.test_client()
    with client.session_transaction() as sess:
        sess["_user_id"] = OWNER
        sess["_fresh"] = True
    return client


def test_check_now_goes_through_the_claim_and_the_pool(sched_app, dovecot, new_user):
    # A 30 s tick: only the poke from "check now" can make the fetch happen quickly.
    app = sched_app(POPACCOUNTS_SCHEDULER_TICK_SECONDS=30)
    user, pw = new_user
    aid = add_account(app, dovecot, user, pw, fetch_interval_minutes=60)
    with Recorder() as rec:
        sched = start_in_process(app)
        assert sched is not None
        wait_until(lambda: rec.times("account_fetched", aid), 10, "the first (due) fetch")
        dovecot.deliver_many(user, messages(user, 4))
        client = login_client(app)
        resp = client.post(f"{PREFIX}/{aid}/check", headers={"Accept": "application/json"})
        assert resp.get_json()["started"] is True
        assert resp.get_json()["waits_for_user"] is False
        wait_until(lambda: count(app, aid) == 4, 5, "check now through the scheduler")
        wait_until(lambda: len(rec.of("account_fetched", aid)) == 2, 5, "the fetch to end")
        wait_until(lambda: account(app, aid).lease_owner is None, 5, "the lease released")
        second = rec.of("account_fetched", aid)[-1]
        assert second[3].startswith("popaccounts-fetch")  # the pool, not a side thread
        assert get_state(app).fetches.threads.get(aid) is None
    acc = account(app, aid)
    assert acc.check_requested_at is None and acc.lease_owner is None


def test_transient_failures_back_off_with_jitter_then_recover(sched_app, dovecot, new_user):
    dead_port = free_port()  # nothing listens: connection refused, a transient failure
    app = sched_app(POPACCOUNTS_ALLOWED_POP3_PORTS=(dovecot.pop3s_port, dead_port),
                    POPACCOUNTS_BACKOFF_BASE_SECONDS=0.6, POPACCOUNTS_BACKOFF_MAX_SECONDS=1.2,
                    POPACCOUNTS_SCHEDULER_TICK_SECONDS=0.1)
    user, pw = new_user
    dovecot.deliver_many(user, messages(user, 2))
    aid = add_account(app, dovecot, user, pw, pop_port=dead_port)
    with Recorder() as rec:
        start_in_process(app)
        wait_until(lambda: len(rec.times("account_failed", aid)) >= 5, 10, "five failures")
        acc = account(app, aid)
        assert acc.status == AccountStatus.RETRYING.value
        assert acc.last_error_code == "connection_failed"
        assert acc.consecutive_failures >= 5
        failed = rec.times("account_failed", aid)[:5]
        gaps = [b - a for a, b in itertools.pairwise(failed)]
        # base 0.6 s doubling, capped at 1.2 s, times a jitter of 0.5-1.0
        floors = [0.3, 0.6, 0.6, 0.6]
        assert all(g >= f - 0.05 for g, f in zip(gaps, floors, strict=True)), gaps
        assert all(g <= 1.2 + 0.1 + 0.5 for g in gaps), gaps
        assert all(e[4]["transient"] for e in rec.of("account_failed", aid))
        assert not rec.of("account_disabled", aid)
        # The server comes back (the account now points at it): it recovers by itself.
        with get_state(app).session_factory() as session:
            session.execute(update(Account).where(Account.id == aid)
                            .values(pop_port=dovecot.pop3s_port))
            session.commit()
        wait_until(lambda: rec.of("account_recovered", aid), 5, "recovery")
    acc = account(app, aid)
    assert acc.status == AccountStatus.OK.value and acc.consecutive_failures == 0
    assert count(app, aid) == 2


def test_backoff_is_capped_and_jittered(sched_app):
    app = sched_app(POPACCOUNTS_BACKOFF_BASE_SECONDS=60, POPACCOUNTS_BACKOFF_MAX_SECONDS=3600)
    first = [health.fetch_backoff_seconds(app, 1) for _ in range(200)]
    assert 30 <= min(first) and max(first) <= 60 and len(set(first)) > 100
    late = [health.fetch_backoff_seconds(app, 30) for _ in range(200)]
    assert 1800 <= min(late) and max(late) <= 3600


def test_password_changed_mid_life_stops_logins_until_updated_on_the_page(
        sched_app, dovecot, new_user, monkeypatch, fake_clock):
    # Failing logins come from their own address (Dovecot's per-IP auth penalty). Due
    # times follow the app's clock, which the test moves on.
    app = use_clock(sched_app(POPACCOUNTS_SOURCE_ADDRESS=fresh_source_address()[0],
                              POPACCOUNTS_SCHEDULER_TICK_SECONDS=0.2), fake_clock)
    user, pw = new_user
    dovecot.deliver_many(user, messages(user, 2))
    aid = add_account(app, dovecot, user, pw, fetch_interval_minutes=3)  # polled every 3 s
    with Recorder() as rec:
        start_in_process(app)
        wait_until(lambda: count(app, aid) == 2, 10, "first fetch")
        dovecot.set_password(user, "changed-at-the-provider")
        fake_clock.advance(3)  # the next poll is due
        wait_until(lambda: account(app, aid).status == AccountStatus.NEEDS_PASSWORD.value, 10,
                   "the account to be marked")
        assert [e[4]["code"] for e in rec.of("account_disabled", aid)] == ["auth_failed"]
        assert [e[4]["transient"] for e in rec.of("account_failed", aid)] == [False]
        attempts = logins(dovecot, user)
        # Count the dispatcher's claims from here on: each is a chance to log in.
        claims: list[list[int]] = []
        real_claim_due = scheduling.claim_due

        def counted_claim_due(*args: Any, **kw: Any) -> list[int]:
            got = real_claim_due(*args, **kw)
            claims.append(got)
            return got

        monkeypatch.setattr(scheduling, "claim_due", counted_claim_due)
        # Tempt it: an hour passes (20 intervals), it was due long ago, and "check now"
        # is pressed. None of it may log in.
        fake_clock.advance(hours=1)
        with get_state(app).session_factory() as session:
            session.execute(update(Account).where(Account.id == aid).values(
                next_due_at=fake_clock() - timedelta(hours=1)))
            session.commit()
        client = login_client(app)
        resp = client.post(f"{PREFIX}/{aid}/check", headers={"Accept": "application/json"})
        assert resp.get_json()["started"] is False
        assert resp.get_json()["waits_for_user"] is True  # the page says why
        # Overdue and requested: any claim would take it at once. Five claims (the
        # check-now poke and ticks of 0.2 s) went by without it, and nothing logged in.
        wait_until(lambda: len(claims) >= 5, 15, "five claims by the dispatcher")
        assert not any(aid in got for got in claims), claims
        assert logins(dovecot, user) == attempts, dovecot.log()[-2000:]
        assert len(rec.of("account_failed", aid)) == 1
        # The user types the new password on the edit page: re-tested, then fetching resumes.
        dovecot.deliver_many(user, messages(user, 3, start=2))
        form = account_form(email=f"{user}@example.net", name=f"{user} mail",
                            pop_host=dovecot.host, pop_port=str(dovecot.pop3s_port),
                            pop_security="ssl", pop_username=user,
                            password="changed-at-the-provider", fetch_interval_minutes="3")
        resp = client.post(f"{PREFIX}/{aid}/edit", data=form)
        assert resp.status_code == 302, resp.text
        wait_until(lambda: count(app, aid) == 5, 10, "mail flowing again")
        wait_until(lambda: rec.of("account_recovered", aid), 5, "recovered signal")
    acc = account(app, aid)
    assert acc.status == AccountStatus.OK.value and acc.last_error_code is None


def test_progress_is_visible_from_another_app_on_the_same_database(sched_app, dovecot,
                                                                    new_user):
    fetcher = sched_app()
    user, pw = new_user
    dovecot.deliver_many(user, messages(user, 150))
    aid = add_account(fetcher, dovecot, user, pw)
    # A second app on the same database file: another web process, as far as it knows.
    db_uri = fetcher.config["SQLALCHEMY_DATABASE_URI"]
    from tests.support.flaskapp import make_app

    viewer = make_app(db_uri, create=False, POPACCOUNTS_ALLOWED_POP3_PORTS=(995,))
    seen: list[dict[str, Any]] = []

    def slow(p: Progress) -> None:
        time.sleep(0.02)  # the behaviour under test: a slow line, ~3 s for the mailbox

    owner = scheduling.new_worker_id()
    with get_state(fetcher).session_factory() as session:
        assert scheduling.claim(session, owner, aid, 30)
    worker = threading.Thread(target=fetching.run_claimed, args=(fetcher, aid, owner),
                              kwargs={"progress": slow})
    worker.start()
    deadline = time.monotonic() + 60
    while worker.is_alive():  # sample the progress from the other app while it runs
        assert time.monotonic() < deadline, "the fetch did not finish within 60 s"
        info = progress.fetch_progress(aid, app=viewer)
        if info and info["running"]:
            seen.append(info)
        worker.join(timeout=0.1)
    done = [i["done"] for i in seen if i["total"]]
    assert done and done == sorted(done) and 0 < done[0] < 150, seen
    assert all(i["total"] == 150 for i in seen if i["total"])
    with viewer.test_request_context():
        client = login_client(viewer)
        final = client.get(f"{PREFIX}/{aid}/progress.json").get_json()
    assert final["running"] is False and final["message_count"] == 150
    assert account(viewer, aid).progress_done is None
    from tests.support.flaskapp import dispose

    dispose(viewer)
