"""Services against the real engine and a real Dovecot: accounts, fetching, health, claims."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from flask_popaccounts import get_state, signals
from flask_popaccounts.engine.errors import AuthenticationFailed, ConnectionFailed
from flask_popaccounts.engine.types import DeletePolicy, Security
from flask_popaccounts.services import accounts as svc
from flask_popaccounts.services import fetching, health, progress, scheduling
from flask_popaccounts.storage import mailbox
from flask_popaccounts.storage.models import Account, AccountStatus, Message
from tests.support.dovecot import free_port
from tests.support.mail import ARABIC_SUBJECT, make_message

DATES = [  # delivered in this order; sent dates deliberately out of order
    "Mon, 03 Mar 2025 09:00:00 +0000",
    "Sat, 01 Mar 2025 09:00:00 +0000",
    "Tue, 04 Mar 2025 09:00:00 +0300",
    "Sun, 02 Mar 2025 09:00:00 +0000",
]


def account_input(dovecot, user, password, **kw):
    data = dict(
        email=f"{user}@example.net", name=f"{user} mail", send_from="", reply_to="",
        is_default=False, provider="other", pop_host=dovecot.host, pop_port=dovecot.pop3s_port,
        pop_security=Security.SSL, pop_username=user, password=password,
        delete_policy=DeletePolicy.KEEP, delete_after_days=0, fetch_interval_minutes=5,
    )
    data.update(kw)
    return svc.AccountInput(**data)


def logins(dovecot, user) -> int:
    """Login attempts Dovecot logged for this user (successful or not)."""
    return sum(1 for line in dovecot.log().splitlines()
               if "pop3-login:" in line and f"user=<{user}>" in line)


def test_create_fetch_unread_sorted_by_sent_date(app, session, dovecot, new_user):
    user, pw = new_user
    subjects = ["third", "first", ARABIC_SUBJECT, "second"]
    dovecot.deliver_many(user, [make_message(i, subject=s, date=d)
                                for i, (s, d) in enumerate(zip(subjects, DATES, strict=True))])
    data = account_input(dovecot, user, pw)
    caps = svc.test_incoming(app, data)
    assert "UIDL" in caps
    account = svc.create_account(app, session, "owner-1", data)
    assert account.is_default  # the first account of a user
    assert account.secret_enc and pw.encode() not in account.secret_enc
    fetched = []
    signals.message_fetched.connect(lambda s, **kw: fetched.append(kw["message_id"]), weak=False)
    report = fetching.fetch_account(app, account.id)
    assert (report.new, report.stored) == (4, 4)
    msgs = mailbox.list_messages(session, account.id)
    # 04 Mar 09:00+03 = 06:00Z is still the newest
    assert [m.subject for m in msgs] == [ARABIC_SUBJECT, "third", "second", "first"]
    assert not any(m.is_read for m in msgs)
    assert sorted(fetched)[-4:] == sorted(m.id for m in msgs)
    raw = mailbox.read_raw(session, msgs[-1].id)
    assert raw in dovecot.server_messages(user)  # byte-identical
    session.expire_all()
    acc = session.get(Account, account.id)
    assert acc.status == AccountStatus.OK.value and acc.last_success_at is not None
    assert acc.message_count == 4 and acc.bytes_stored == sum(m.size for m in msgs)
    assert acc.next_due_at > acc.last_success_at
    # a second fetch stores nothing twice
    dovecot.deliver(user, make_message(9, subject="late"))
    again = fetching.fetch_account(app, account.id)
    assert (again.new, again.stored) == (1, 1)
    assert fetching.fetch_account(app, account.id).stored == 0
    assert mailbox.count_messages(session, account.id) == 5


def test_wrong_password_stops_fetching_until_updated(app, session, dovecot, new_user):
    user, pw = new_user
    dovecot.deliver(user, make_message(1))
    with pytest.raises(AuthenticationFailed):
        svc.test_incoming(app, account_input(dovecot, user, "wrong"))
    account = svc.create_account(app, session, "owner-2", account_input(dovecot, user, pw))
    dovecot.set_password(user, "changed-at-provider")  # R7
    events = []
    signals.account_disabled.connect(lambda s, **kw: events.append(("disabled", kw)), weak=False)
    signals.account_recovered.connect(lambda s, **kw: events.append(("recovered", kw)),
                                      weak=False)
    with pytest.raises(AuthenticationFailed):
        fetching.fetch_account(app, account.id)
    session.expire_all()
    acc = session.get(Account, account.id)
    assert acc.status == AccountStatus.NEEDS_PASSWORD.value
    assert acc.last_error_code == "auth_failed" and acc.consecutive_failures == 1
    assert ("disabled", {"account_id": account.id, "code": "auth_failed"}) in events
    view = health.status_view(acc)
    assert view.tone == "error" and "password" in view.label.lower()
    before = logins(dovecot, user)
    with pytest.raises(fetching.FetchSkipped) as skipped:
        fetching.fetch_account(app, account.id)
    assert skipped.value.reason == "needs_password"
    assert not fetching.check_now(app, account.id)
    assert logins(dovecot, user) == before  # no further login attempt at all
    # the user updates the password (after a successful test): fetching resumes
    data = account_input(dovecot, user, "changed-at-provider")
    svc.test_incoming(app, data, existing=acc)
    svc.update_account(app, session, acc, data)
    assert acc.status == AccountStatus.NEW.value and acc.consecutive_failures == 0
    assert any(e[0] == "recovered" for e in events)
    assert fetching.fetch_account(app, account.id).stored == 1


def test_delete_policy_removes_only_after_storing(app, session, dovecot, new_user):
    user, pw = new_user
    dovecot.deliver_many(user, [make_message(i) for i in range(3)])
    account = svc.create_account(app, session, "owner-3", account_input(
        dovecot, user, pw, delete_policy=DeletePolicy.DELETE))
    report = fetching.fetch_account(app, account.id)
    assert (report.stored, report.deleted) == (3, 3)
    assert dovecot.server_messages(user) == []
    assert mailbox.count_messages(session, account.id) == 3


def test_sessions_are_cut_and_looped(app, session, dovecot, new_user):
    user, pw = new_user
    app.config["POPACCOUNTS_MAX_MESSAGES_PER_SESSION"] = 2
    dovecot.deliver_many(user, [make_message(i) for i in range(5)])
    account = svc.create_account(app, session, "owner-4", account_input(dovecot, user, pw))
    seen = []
    report = fetching.fetch_account(app, account.id, progress=seen.append)
    assert report.stored == 5 and not report.more_pending
    assert seen[-1].done == 5 and seen[-1].total == 5
    # The bar counts the whole backlog from the first message, not one session's share.
    assert [p.total for p in seen] == [5] * 5 and [p.done for p in seen] == [1, 2, 3, 4, 5]
    info = progress.fetch_progress(account.id, app=app)
    assert info is not None and not info["running"] and info["stored"] == 5


def test_transient_failure_backs_off(app, session, dovecot, new_user):
    user, pw = new_user
    port = free_port()  # nothing listens there
    app.config["POPACCOUNTS_ALLOWED_POP3_PORTS"] = (port,)
    account = svc.create_account(app, session, "owner-5", account_input(dovecot, user, pw,
                                                                   pop_port=port))
    for n in (1, 2):
        with pytest.raises(ConnectionFailed):
            fetching.fetch_account(app, account.id)
        session.expire_all()
        acc = session.get(Account, account.id)
        assert acc.status == AccountStatus.RETRYING.value
        assert acc.consecutive_failures == n
        delay = (acc.next_due_at - acc.last_attempt_at).total_seconds()
        assert 30 * 2 ** (n - 1) <= delay <= 60 * 2 ** (n - 1)
    assert health.status_view(acc).tone == "warning"


def test_claim_one_of_two_wins(app):
    state = get_state(app)
    with state.session_factory() as s:
        acc = Account(owner_id="o", email="c@example.org", name="c", send_from="c@example.org",
                      pop_host="127.0.0.1", pop_port=995, pop_security="ssl", pop_username="c")
        s.add(acc)
        s.commit()
        aid = acc.id
    barrier = threading.Barrier(2)
    results: dict[str, bool] = {}

    def contend(owner: str) -> None:
        with state.session_factory() as s:
            barrier.wait()
            results[owner] = scheduling.claim(s, owner, aid, 60)

    threads = [threading.Thread(target=contend, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == [False, True]
    winner = next(o for o, won in results.items() if won)
    loser = next(o for o, won in results.items() if not won)
    with state.session_factory() as s:
        scheduling.release(s, loser, aid)  # not the loser's to give back
        assert not scheduling.claim(s, loser, aid, 60)
        scheduling.release(s, winner, aid)
        assert scheduling.claim(s, loser, aid, 60)


def test_check_now_runs_once_in_background(app, session, dovecot, new_user):
    user, pw = new_user
    dovecot.deliver_many(user, [make_message(i) for i in range(3)])
    account = svc.create_account(app, session, "owner-6", account_input(dovecot, user, pw))
    assert fetching.check_now(app, account.id)
    assert not fetching.check_now(app, account.id)  # already claimed
    assert fetching.wait_for_check(app, account.id, timeout=30)
    assert mailbox.count_messages(session, account.id) == 3
    session.expire_all()
    assert session.get(Account, account.id).lease_owner is None
    assert fetching.check_now(app, account.id)  # free again
    assert fetching.wait_for_check(app, account.id, timeout=30)


def test_accounts_owner_default_delete(app, session, dovecot, new_user):
    user, pw = new_user
    dovecot.deliver(user, make_message(1))
    a = svc.create_account(app, session, "owner-7", account_input(dovecot, user, pw))
    b = svc.create_account(app, session, "owner-7", account_input(
        dovecot, user, pw, email="second@example.net", is_default=True))
    session.expire_all()
    assert [x.id for x in svc.list_accounts(session, "owner-7")] == [b.id, a.id]
    assert not session.get(Account, a.id).is_default
    svc.set_default(session, session.get(Account, a.id))
    session.expire_all()
    assert session.get(Account, a.id).is_default and not session.get(Account, b.id).is_default
    from werkzeug.exceptions import NotFound

    with pytest.raises(NotFound):
        svc.get_owned_account(session, "someone-else", a.id)
    assert svc.get_owned_account(session, "owner-7", a.id).id == a.id
    fetching.fetch_account(app, a.id)
    svc.set_enabled(app, session, session.get(Account, b.id), False)
    assert health.status_view(session.get(Account, b.id)).label == "Disabled"
    with pytest.raises(fetching.FetchSkipped):
        fetching.fetch_account(app, b.id)
    svc.delete_account(app, session, svc.get_owned_account(session, "owner-7", a.id))
    session.expire_all()
    assert session.scalar(select(Message).where(Message.account_id == a.id)) is None
    assert session.get(Account, b.id).is_default  # the remaining account takes over
    assert mailbox.storage_used(session, "owner-7") == {b.id: 0}


def test_control_characters_refused(app, dovecot):
    from flask_popaccounts.engine.errors import InvalidInput

    for field in ("pop_username", "password", "pop_host"):
        data = account_input(dovecot, "x", "y")
        setattr(data, field, "bad\r\nUSER evil")
        with pytest.raises(InvalidInput):
            svc.test_incoming(app, data)


def test_cli_fetch_with_progress(app, session, dovecot, new_user):
    user, pw = new_user
    dovecot.deliver_many(user, [make_message(i) for i in range(6)])
    account = svc.create_account(app, session, "owner-8", account_input(dovecot, user, pw))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["popaccounts", "fetch", "--account", str(account.id)])
    assert result.exit_code == 0, result.output
    assert "6 stored" in result.output
    result = runner.invoke(args=["popaccounts", "fetch", "--all"])
    assert result.exit_code == 0 and "0 stored" in result.output
    assert mailbox.count_messages(session, account.id) == 6
    dovecot.set_password(user, "changed")
    result = runner.invoke(args=["popaccounts", "fetch", "--account", str(account.id)])
    assert result.exit_code == 1 and "Authentication failed" in result.output
    assert pw not in result.output


def test_uidl_reset_needs_confirmation(app, session, dovecot, new_user):
    from flask_popaccounts.engine.errors import UIDLReset

    user, pw = new_user
    dovecot.deliver_many(user, [make_message(i) for i in range(12)])
    account = svc.create_account(app, session, "owner-9", account_input(dovecot, user, pw))
    assert fetching.fetch_account(app, account.id).stored == 12
    dovecot.reset_uidls(user)  # the provider rebuilt the mailbox: every UIDL changes
    with pytest.raises(UIDLReset):
        fetching.fetch_account(app, account.id)
    session.expire_all()
    acc = session.get(Account, account.id)
    assert acc.status == AccountStatus.NEEDS_ATTENTION.value
    assert mailbox.count_messages(session, account.id) == 12  # nothing imported twice
    svc.set_enabled(app, session, acc, True)  # enabling alone does not accept the reset
    assert acc.status == AccountStatus.NEEDS_ATTENTION.value
    svc.confirm_uidl_reset(app, session, acc)
    assert fetching.fetch_account(app, account.id).stored == 12
    session.expire_all()
    acc = session.get(Account, account.id)
    assert acc.status == AccountStatus.OK.value and not acc.accept_uidl_reset
