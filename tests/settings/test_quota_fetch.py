"""Storage against the quota at fetch time (R19), on a real Dovecot.

The quota is reached in the middle of a fetch with delete-after-store on: what fits is
stored, the rest stays on the server (nothing deleted that was not stored), the account
pauses with an explanation and no further logins; freeing space (empty Trash, delete
older than N days) resumes it, and at the end every delivered message was stored
exactly once.
"""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from flask_popaccounts import get_state, signals
from flask_popaccounts.engine.errors import QuotaExceeded
from flask_popaccounts.engine.types import DeletePolicy, Security
from flask_popaccounts.services import accounts as svc
from flask_popaccounts.services import fetching, health, quota
from flask_popaccounts.storage.models import Account, AccountStatus, Folder, Message, UidlEntry
from tests.support.dovecot import Dovecot
from tests.support.mail import make_message

OWNER = "quota-owner"


def account_input(dovecot: Dovecot, user: str, password: str, **kw: Any) -> svc.AccountInput:
    data: dict[str, Any] = dict(
        email=f"{user}@example.net", name=f"{user} mail", send_from="", reply_to="",
        is_default=False, provider="other", pop_host=dovecot.host, pop_port=dovecot.pop3s_port,
        pop_security=Security.SSL, pop_username=user, password=password,
        delete_policy=DeletePolicy.DELETE, delete_after_days=0, fetch_interval_minutes=5)
    data.update(kw)
    return svc.AccountInput(**data)


def logins(dovecot: Dovecot, user: str) -> int:
    return sum(1 for line in dovecot.log().splitlines()
               if "pop3-login:" in line and f"user=<{user}>" in line)


def message_ids(raws: list[bytes]) -> list[str]:
    out = []
    for raw in raws:
        for line in raw.split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                out.append(line.split(b":", 1)[1].strip().decode())
    return out


def stored_ids(session: Session, account_id: int) -> set[str]:
    session.expire_all()
    return set(session.scalars(select(Message.message_id).where(Message.account_id == account_id)))


def test_quota_mid_fetch_pauses_then_resumes_with_nothing_lost(
        app: Flask, session: Session, dovecot: Dovecot, new_user: tuple[str, str]) -> None:
    user, pw = new_user
    recent = format_datetime(datetime.now(timezone.utc))
    dates = ["Mon, 02 Mar 2020 09:00:00 +0000"] * 3 + [recent] * 3
    dovecot.deliver_many(user, [make_message(i, body_size=4000, date=d)
                                for i, d in enumerate(dates)])
    delivered = dovecot.server_messages(user)
    sizes = [len(r) for r in delivered]
    all_ids = message_ids(delivered)
    assert len(set(all_ids)) == 6
    limit = sum(sizes[:3]) + sizes[3] // 2  # room for three messages, not four
    get_state(app).ext.quota = lambda owner: limit if owner == OWNER else None

    fetched: list[str] = []

    def on_fetched(sender: Any, account_id: int, message_id: int) -> None:
        with get_state(app).session_factory() as s:
            fetched.append(str(s.scalar(select(Message.message_id)
                                        .where(Message.id == message_id))))

    account = svc.create_account(app, session, OWNER, account_input(dovecot, user, pw))
    with signals.message_fetched.connected_to(on_fetched):
        # 1. the quota is crossed by the fourth message: three stored, six still on the server
        with pytest.raises(QuotaExceeded):
            fetching.fetch_account(app, account.id)
        assert stored_ids(session, account.id) == set(all_ids[:3])
        assert len(dovecot.server_messages(user)) == 6  # delete-after-store, yet no DELE
        session.refresh(account)
        assert account.status == AccountStatus.PAUSED_QUOTA.value
        assert account.last_error_code == "quota_exceeded"
        view = health.status_view(account)
        assert "storage is full" in view.label.lower() and "Storage page" in view.explanation

        # 2. still full: the next attempt does not even log in
        before = logins(dovecot, user)
        with pytest.raises(fetching.FetchSkipped) as skipped:
            fetching.fetch_account(app, account.id)
        assert skipped.value.reason == "paused_quota" and logins(dovecot, user) == before

        # 3. the user deletes one (to Trash) and empties Trash: fetching resumes by itself
        trash = session.scalar(select(Folder.id).where(Folder.account_id == account.id,
                                                       Folder.role == "trash"))
        first = session.scalar(select(Message.id).where(Message.account_id == account.id,
                                                        Message.message_id == all_ids[0]))
        session.execute(update(Message).where(Message.id == first).values(folder_id=trash))
        session.commit()
        assert quota.empty_trash(app, session, account) == (1, sizes[0])
        session.refresh(account)
        assert account.status != AccountStatus.PAUSED_QUOTA.value
        with pytest.raises(QuotaExceeded):  # room for one more: the 4th, then paused again
            fetching.fetch_account(app, account.id)
        assert stored_ids(session, account.id) == set(all_ids[1:4])
        assert len(dovecot.server_messages(user)) == 6

        # 4. delete mail older than a year (messages 2 and 3): the rest comes in
        assert quota.older_than(session, account, 365) == (2, sizes[1] + sizes[2])
        assert quota.delete_older_than(app, session, account, 365) == (2, sizes[1] + sizes[2])
        report = fetching.fetch_account(app, account.id)
        assert report.stored == 2

    assert stored_ids(session, account.id) == set(all_ids[3:])
    # every delivered message stored exactly once, in total, and then deleted on the server
    assert sorted(fetched) == sorted(all_ids)
    ledger = set(session.scalars(select(UidlEntry.uidl).where(UidlEntry.account_id == account.id)))
    assert len(ledger) == 6
    assert dovecot.server_messages(user) == []
    session.refresh(account)
    assert account.status == AccountStatus.OK.value and account.fetched_total == 6
    assert account.bytes_stored == sum(sizes[3:])


def test_no_quota_means_no_guard_and_config_value_applies(app: Flask, session: Session) -> None:
    assert quota.quota_for(app, "x") is None
    app.config["POPACCOUNTS_QUOTA_BYTES"] = 1000
    try:
        assert quota.quota_for(app, "x") == 1000
        get_state(app).ext.quota = lambda owner: 5
        assert quota.quota_for(app, "x") == 5
    finally:
        app.config["POPACCOUNTS_QUOTA_BYTES"] = None
        get_state(app).ext.quota = None


def test_paused_account_retries_at_its_recheck_time_and_a_larger_quota_resumes_it(
        app: Flask, session: Session, dovecot: Dovecot, new_user: tuple[str, str]) -> None:
    user, pw = new_user
    dovecot.deliver_many(user, [make_message(i, body_size=3000) for i in range(3)])
    sizes = [len(r) for r in dovecot.server_messages(user)]
    limit = [sizes[0] + 10]
    get_state(app).ext.quota = lambda owner: limit[0]
    try:
        account = svc.create_account(app, session, OWNER, account_input(dovecot, user, pw))
        with pytest.raises(QuotaExceeded):
            fetching.fetch_account(app, account.id)
        session.refresh(account)
        assert account.status == AccountStatus.PAUSED_QUOTA.value
        assert account.next_due_at is not None  # re-checked after the interval

        # at the re-check time, still no room for the next one: one login, nothing lost
        session.execute(update(Account).where(Account.id == account.id)
                        .values(next_due_at=datetime(2000, 1, 1, tzinfo=timezone.utc)))
        session.commit()
        before = logins(dovecot, user)
        with pytest.raises(QuotaExceeded):
            fetching.fetch_account(app, account.id)
        assert logins(dovecot, user) == before + 1
        session.refresh(account)
        assert len(dovecot.server_messages(user)) == 3 and account.fetched_total == 1
        assert account.status == AccountStatus.PAUSED_QUOTA.value

        # the host raises the quota: the next re-check brings the rest in, then deletes
        limit[0] = sum(sizes) + 10
        session.execute(update(Account).where(Account.id == account.id)
                        .values(next_due_at=datetime(2000, 1, 1, tzinfo=timezone.utc)))
        session.commit()
        assert fetching.fetch_account(app, account.id).stored == 2
        session.refresh(account)
        assert account.status == AccountStatus.OK.value and account.fetched_total == 3
        assert dovecot.server_messages(user) == []
    finally:
        get_state(app).ext.quota = None
