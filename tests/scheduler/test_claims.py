"""Leases on SQLite: due accounts are claimed once, expired leases are taken over."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from flask_popaccounts.engine.types import Security
from flask_popaccounts.runtime import tune_sqlite as _tune_sqlite
from flask_popaccounts.services import scheduling
from flask_popaccounts.storage.models import Account, AccountStatus, Base
from tests.support.waiting import wait_until


@pytest.fixture
def factory(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'claims.db'}")
    _tune_sqlite(engine)  # WAL and busy timeout, as the extension runs it
    Base.metadata.create_all(engine)
    return sessionmaker(bind=engine, expire_on_commit=False)


def _add(session: Session, n: int, **kw) -> list[int]:
    base = session.query(Account).count()
    accounts = [
        Account(owner_id="u", email=f"a{i}@example.org", name=f"a{i}",
                send_from=f"a{i}@example.org", pop_host="pop.example.org", pop_port=995,
                pop_security=Security.SSL,
                pop_username=f"a{i}", **kw)
        for i in range(base, base + n)
    ]
    session.add_all(accounts)
    session.commit()
    return [a.id for a in accounts]


def _taken_over(session: Session, account_id: int, owner: str) -> None:
    """Another process took the account over (as after our lease ran out)."""
    session.execute(update(Account).where(Account.id == account_id)
                    .values(lease_owner=owner))
    session.commit()


def test_each_due_account_is_claimed_by_exactly_one_of_many_threads(factory):
    with factory() as s:
        ids = _add(s, 40)
    results: dict[str, list[int]] = {}
    barrier = threading.Barrier(8)

    def grab(name: str) -> None:
        barrier.wait()
        got: list[int] = []
        with factory() as s:
            for _ in range(10):
                got += scheduling.claim_due(s, name, 3, 600)
        results[name] = got

    threads = [threading.Thread(target=grab, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [i for got in results.values() for i in got]
    assert sorted(claimed) == sorted(ids)  # every account once, none twice
    with factory() as s:
        owners = {a.id: a.lease_owner for a in s.scalars(select(Account))}
    for name, got in results.items():
        assert all(owners[i] == name for i in got)


def test_accounts_needing_the_user_or_not_due_are_not_claimed(factory):
    later = datetime.now(timezone.utc) + timedelta(minutes=5)
    with factory() as s:
        due = _add(s, 1)
        _add(s, 1, status=AccountStatus.NEEDS_PASSWORD)
        _add(s, 1, status=AccountStatus.NEEDS_REAUTH)
        _add(s, 1, enabled=False)
        _add(s, 1, next_due_at=later)
        assert scheduling.claim_due(s, "me", 10, 600) == due


def test_an_expired_lease_is_taken_over_and_a_live_one_is_not(factory):
    with factory() as s:
        (account_id,) = _add(s, 1)
        # A short lease on the database's clock: waited out for real, not faked.
        assert scheduling.claim_due(s, "dead", 1, 0.5) == [account_id]
        assert scheduling.claim_due(s, "other", 1, 60) == []
        wait_until(lambda: scheduling.claim_due(s, "other", 1, 60) == [account_id], 10,
                   "the dead worker's lease to run out and be taken over")
        # The dead worker's renewal and release no longer touch the row.
        assert scheduling.renew_ids(s, "dead", [account_id], 60) == set()
        scheduling.release(s, "dead", account_id)
        assert s.get(Account, account_id, populate_existing=True).lease_owner == "other"
        scheduling.release(s, "other", account_id)
        assert s.get(Account, account_id, populate_existing=True).lease_owner is None


def test_check_now_goes_first_and_may_retry_an_account_needing_attention(factory):
    with factory() as s:
        overdue = _add(s, 2, next_due_at=datetime.now(timezone.utc) - timedelta(hours=1))
        (attention,) = _add(s, 1, status=AccountStatus.NEEDS_ATTENTION)
        (refused,) = _add(s, 1, status=AccountStatus.NEEDS_PASSWORD)
        (off,) = _add(s, 1, status=AccountStatus.DISABLED, enabled=False)
        (later,) = _add(s, 1, next_due_at=datetime.now(timezone.utc) + timedelta(hours=1))
        for account_id in (attention, refused, off, later):
            scheduling.make_due_now(s, account_id)
        # requested first (oldest request first), then the overdue ones; never the
        # refused-credentials or disabled accounts, requested or not
        assert scheduling.claim_due(s, "me", 10, 600) == [attention, later, *overdue]
        acc = s.get(Account, attention, populate_existing=True)
        assert acc.check_requested_at is None and acc.lease_owner == "me"
        assert scheduling.claim_due(s, "me", 10, 600) == []


def test_single_claim_one_winner_and_own_reclaim_extends(factory):
    with factory() as s:
        (account_id,) = _add(s, 1, status=AccountStatus.NEEDS_ATTENTION)
        assert scheduling.claim(s, "a", account_id, 60)
        assert not scheduling.claim(s, "b", account_id, 60)
        first = s.get(Account, account_id, populate_existing=True).lease_expires_at
        assert scheduling.claim(s, "a", account_id, 120)
        assert s.get(Account, account_id, populate_existing=True).lease_expires_at > first
        assert scheduling.lease_is_live(s, account_id)
        scheduling.release(s, "a", account_id)
        assert not scheduling.lease_is_live(s, account_id)


def test_heartbeat_renews_while_held_and_notices_a_takeover(factory):
    with factory() as s:
        (account_id,) = _add(s, 1)
        assert scheduling.claim(s, "me", account_id, 2)
        before = s.get(Account, account_id, populate_existing=True).lease_expires_at
    with scheduling.LeaseHeartbeat(factory, "me", account_id, 2, interval=0.1) as hb:
        wait_until(lambda: hb.renewals >= 3, 10, "three renewals of the lease")
        assert not hb.lost
        hb.check()
        with factory() as s:
            assert s.get(Account, account_id).lease_expires_at > before
            # A stall past expiry and a takeover by another process.
            _taken_over(s, account_id, "other")
        wait_until(lambda: hb.lost, 10, "the heartbeat to notice the takeover")
        with pytest.raises(scheduling.LeaseLost):
            hb.check()
    with factory() as s:
        assert s.get(Account, account_id).lease_owner == "other"  # never given back by us


def test_concurrent_single_claims_never_come_back_empty_while_accounts_are_due(factory):
    # The scheduler's workers each claim their next account with limit=1. They used
    # to read the same top candidate and race for it; the losers got nothing and
    # idled until the next tick although hundreds were due (the poll benchmark ran
    # with 2-3 of 16 workers busy).
    with factory() as s:
        ids = _add(s, 64)
    results: dict[str, list[int]] = {}
    barrier = threading.Barrier(8)

    def grab(name: str) -> None:
        barrier.wait()
        got: list[int] = []
        with factory() as s:
            for _ in range(8):
                got += scheduling.claim_due(s, name, 1, 600)
        results[name] = got

    threads = [threading.Thread(target=grab, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(len(got) == 8 for got in results.values()), results
    claimed = [i for got in results.values() for i in got]
    assert sorted(claimed) == sorted(ids)


def test_claim_due_is_one_statement_on_sqlite(factory):
    with factory() as s:
        _add(s, 5)
    statements: list[str] = []
    engine = factory.kw["bind"]
    from sqlalchemy import event

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        with factory() as s:
            assert len(scheduling.claim_due(s, "me", 3, 600)) == 3
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    updates = [st for st in statements if st.lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 1 and "RETURNING" in updates[0]
    assert "FROM popaccounts_account" in updates[0]  # the due subquery is not correlated


def test_heartbeats_of_one_owner_share_one_thread_and_one_update_per_beat(factory):
    with factory() as s:
        a, b = _add(s, 2)
        assert scheduling.claim(s, "me", a, 2) and scheduling.claim(s, "me", b, 2)
    statements: list[str] = []
    engine = factory.kw["bind"]
    from sqlalchemy import event

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    before = {t.name for t in threading.enumerate()}
    event.listen(engine, "before_cursor_execute", seen)
    try:
        with scheduling.LeaseHeartbeat(factory, "me", a, 2, interval=0.1) as ha, \
                scheduling.LeaseHeartbeat(factory, "me", b, 2, interval=0.1) as hb:
            lease_threads = [t for t in threading.enumerate()
                             if t.name.startswith("popaccounts-lease") and t.name not in before]
            assert len(lease_threads) == 1
            wait_until(lambda: ha.renewals >= 3 and hb.renewals >= 3, 10,
                       "three renewals of both leases")
            # b is taken over: only b's heartbeat notices
            with factory() as s:
                _taken_over(s, b, "other")
            wait_until(lambda: hb.lost, 10, "b's heartbeat to notice the takeover")
            beats_after_takeover = ha.renewals
            # a beat renews both leases at once: once a's count moves on, that beat
            # also tried b's lease, so a must still hold
            wait_until(lambda: ha.renewals > beats_after_takeover, 10, "another beat of a")
            assert not ha.lost
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    updates = [st for st in statements if st.lstrip().upper().startswith("UPDATE")]
    beats = ha.renewals + (1 if hb.lost else 0)
    assert len(updates) <= beats + 2  # one UPDATE per beat for both leases (+ the claim)
    # With no lease left to renew, the shared thread ends by itself.
    wait_until(lambda: not [t for t in threading.enumerate()
                            if t.name.startswith("popaccounts-lease") and t.name not in before],
               10, "the idle lease thread to end")
