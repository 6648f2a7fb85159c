"""Fixtures for the scheduler tests: apps on real Dovecot, accounts, a running scheduler."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from flask_popaccounts import get_state
from flask_popaccounts.engine.types import DeletePolicy, Security
from flask_popaccounts.services import accounts as svc
from flask_popaccounts.storage.models import Account
from tests.support.dovecot import Dovecot
from tests.support.flaskapp import dispose, make_app
from tests.support.mail import make_message

OWNER = "owner-1"


def dovecot_config(dovecot: Dovecot, **over: Any) -> dict[str, Any]:
    """Config that lets an app reach the test Dovecot, with a quick scheduler."""
    cfg: dict[str, Any] = dict(
        POPACCOUNTS_ALLOWED_POP3_PORTS=(dovecot.pop3_port, dovecot.pop3s_port),
        POPACCOUNTS_CA_FILE=dovecot.ca_file,
        POPACCOUNTS_CONNECT_TIMEOUT=5,
        POPACCOUNTS_READ_TIMEOUT=20,
        POPACCOUNTS_SCHEDULER_TICK_SECONDS=0.3,
        POPACCOUNTS_WORKERS=3,
        POPACCOUNTS_LEASE_SECONDS=6,
        POPACCOUNTS_INTERVAL_UNIT_SECONDS=1,  # an interval "minute" lasts one second here
    )
    cfg.update(over)
    return cfg


def account_input(dovecot: Dovecot, user: str, password: str, **kw: Any) -> svc.AccountInput:
    data: dict[str, Any] = dict(
        email=f"{user}@example.net", name=f"{user} mail", send_from="", reply_to="",
        is_default=False, provider="other", pop_host=dovecot.host, pop_port=dovecot.pop3s_port,
        pop_security=Security.SSL, pop_username=user, password=password,
        delete_policy=DeletePolicy.KEEP, delete_after_days=0, fetch_interval_minutes=5,
    )
    data.update(kw)
    return svc.AccountInput(**data)


def add_account(app: Flask, dovecot: Dovecot, user: str, password: str, **kw: Any) -> int:
    with app.app_context(), get_state(app).session_factory() as session:
        account = svc.create_account(app, session, OWNER, account_input(dovecot, user, password,
                                                                   **kw))
        session.commit()
        return int(account.id)


def messages(user: str, n: int, *, start: int = 0, body_size: int = 200) -> list[bytes]:
    """``n`` messages with Message-IDs unique to this user."""
    return [make_message(i, body_size=body_size, rng=random.Random(f"{user}-{i}"))
            for i in range(start, start + n)]


def account(app: Flask, account_id: int) -> Account:
    with get_state(app).session_factory() as session:
        acc = session.get(Account, account_id)
        assert acc is not None
        return acc


def logins(dovecot: Dovecot, user: str) -> int:
    """Login attempts Dovecot logged for this user (successful or not)."""
    return sum(1 for line in dovecot.log().splitlines()
               if "pop3-login:" in line and f"user=<{user}>" in line)


@pytest.fixture
def sched_app(tmp_path, dovecot) -> Iterator[Callable[..., Flask]]:
    """Factory: an app on a fresh SQLite file reaching the session Dovecot (scheduler off
    until the test starts it with ``start_in_process``); schedulers are shut down after."""
    apps: list[Flask] = []

    def factory(**over: Any) -> Flask:
        app = make_app(tmp_path / f"sched{len(apps)}.db", **dovecot_config(dovecot, **over))
        apps.append(app)
        return app

    yield factory
    for app in apps:
        sched = get_state(app).scheduler
        if sched is not None:
            sched.shutdown(wait=True)
        dispose(app)

