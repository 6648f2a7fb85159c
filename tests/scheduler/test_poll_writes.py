"""An idle poll through run_claimed writes once: the outcome and the lease's release."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from flask_popaccounts import get_state
from flask_popaccounts.services import fetching, scheduling
from flask_popaccounts.storage.models import AccountStatus
from tests.conftest import fresh_source_address

from .conftest import account, add_account, messages


def _write_commits(engine: Any) -> tuple[list[int], Any, Any]:
    """Counts commits that carried a write (UPDATE/INSERT/DELETE) on ``engine``."""
    pending: dict[int, int] = {}
    writes: list[int] = []

    def on_execute(conn, cursor, statement, *args):
        if statement.lstrip().split(None, 1)[0].upper() in ("UPDATE", "INSERT", "DELETE"):
            pending[id(conn)] = pending.get(id(conn), 0) + 1

    def on_commit(conn):
        n = pending.pop(id(conn), 0)
        if n:
            writes.append(n)

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    return writes, on_execute, on_commit


def test_idle_poll_writes_the_outcome_and_the_release_in_one_transaction(
        sched_app, dovecot, new_user):
    user, pw = new_user
    dovecot.deliver_many(user, messages(user, 2))
    app = sched_app()
    aid = add_account(app, dovecot, user, pw)
    factory = get_state(app).session_factory
    owner = scheduling.new_worker_id()
    with app.app_context():
        with factory() as s:
            assert scheduling.claim(s, owner, aid, 60)
        assert fetching.run_claimed(app, aid, owner).stored == 2  # not idle: fills
        acc = account(app, aid)
        assert acc.lease_owner is None and acc.status == AccountStatus.OK.value
        assert acc.progress_started_at is None

        engine = get_state(app).engine
        with factory() as s:
            assert scheduling.claim(s, owner, aid, 60)
        writes, on_execute, on_commit = _write_commits(engine)
        try:
            report = fetching.run_claimed(app, aid, owner)  # idle: nothing new
        finally:
            event.remove(engine, "before_cursor_execute", on_execute)
            event.remove(engine, "commit", on_commit)
    assert report.new == 0 and report.stored == 0
    assert len(writes) == 1, writes  # one write transaction: outcome + release
    acc = account(app, aid)
    assert acc.lease_owner is None and acc.lease_expires_at is None
    assert acc.status == AccountStatus.OK.value and acc.last_success_at is not None


def test_a_failed_poll_records_and_releases_in_one_transaction(sched_app, dovecot, new_user):
    user, _pw = new_user
    # (its own source address: Dovecot delays later logins from an IP that failed one)
    app = sched_app(POPACCOUNTS_SOURCE_ADDRESS=fresh_source_address()[0])
    aid = add_account(app, dovecot, user, "wrong password")
    factory = get_state(app).session_factory
    owner = scheduling.new_worker_id()
    engine = get_state(app).engine
    with app.app_context():
        with factory() as s:
            assert scheduling.claim(s, owner, aid, 60)
        writes, on_execute, on_commit = _write_commits(engine)
        try:
            try:
                fetching.run_claimed(app, aid, owner)
            except fetching.PopAccountsError:
                pass
        finally:
            event.remove(engine, "before_cursor_execute", on_execute)
            event.remove(engine, "commit", on_commit)
    assert len(writes) == 1, writes
    acc = account(app, aid)
    assert acc.lease_owner is None and acc.status == AccountStatus.NEEDS_PASSWORD.value


def test_a_skipped_fetch_still_gives_the_lease_back(sched_app, dovecot, new_user):
    user, pw = new_user
    app = sched_app()
    aid = add_account(app, dovecot, user, pw)
    factory = get_state(app).session_factory
    owner = scheduling.new_worker_id()
    with app.app_context():
        with factory() as s:
            acc = s.get(type(account(app, aid)), aid)
            acc.status = AccountStatus.NEEDS_PASSWORD.value
            s.commit()
            assert scheduling.claim(s, owner, aid, 60)
        try:
            fetching.run_claimed(app, aid, owner)
        except fetching.FetchSkipped:
            pass
    assert account(app, aid).lease_owner is None
