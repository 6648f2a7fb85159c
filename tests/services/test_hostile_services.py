"""Hostile POP3 servers through the services: what the account card says, what is
stored and deleted (issue 11, items 1, 6, 9). Against HostilePOP; LOGIN-DELAY: it
announces ``LOGIN-DELAY 900`` and refuses a login sooner than that with
``-ERR [LOGIN-DELAY]``: the next login waits, a refusal is the server's pace, never a
failure."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask

from flask_popaccounts import get_state
from flask_popaccounts.engine.errors import ListingTooLarge, LoginDelay, ProtocolOutOfStep
from flask_popaccounts.engine.types import DeletePolicy, Security
from flask_popaccounts.services import accounts as svc
from flask_popaccounts.services import fetching, health
from flask_popaccounts.storage.models import Account, AccountStatus
from tests.support.flaskapp import dispose, make_app
from tests.support.hostilepop import PASSWORD, USER, HostilePOP
from tests.support.mail import make_message


@pytest.fixture
def srv() -> Iterator[HostilePOP]:
    with HostilePOP([(b"u%d" % i, make_message(i)) for i in range(3)]) as server:
        server.quirks.login_delay = 900
        yield server


@pytest.fixture
def app(tmp_path: Path, srv: HostilePOP) -> Iterator[Flask]:
    app = make_app(tmp_path / "host.db", POPACCOUNTS_ALLOWED_POP3_PORTS=(srv.port,),
                   POPACCOUNTS_CA_FILE=srv.ca_file, POPACCOUNTS_CONNECT_TIMEOUT=5,
                   POPACCOUNTS_READ_TIMEOUT=10)
    with app.app_context():
        yield app
    dispose(app)


def _account(app: Flask, srv: HostilePOP, delete: DeletePolicy = DeletePolicy.KEEP) -> int:
    data = svc.AccountInput(
        email="me@example.net", name="me", send_from="", reply_to="", is_default=False,
        provider="other", pop_host="127.0.0.1", pop_port=srv.port,
        pop_security=Security.STARTTLS, pop_username=USER, password=PASSWORD,
        delete_policy=delete, delete_after_days=0, fetch_interval_minutes=5)
    with get_state(app).session_factory() as session:
        account = svc.create_account(app, session, "owner-1", data)
        session.commit()
        return account.id


def _get(app: Flask, account_id: int) -> Account:
    with get_state(app).session_factory() as session:
        account = session.get(Account, account_id)
        assert account is not None
        session.expunge(account)
        return account


def test_next_login_waits_for_the_delay_and_a_refusal_is_no_failure(
        app: Flask, srv: HostilePOP) -> None:
    account_id = _account(app, srv)
    report = fetching.fetch_account(app, account_id)
    assert report.stored == 3 and report.login_delay == 900
    acc = _get(app, account_id)
    assert acc.status == AccountStatus.OK.value
    # The interval is 5 minutes; the server asks for 15 between logins.
    assert acc.next_due_at - acc.last_attempt_at == timedelta(seconds=900)

    for _ in range(4):  # "check now" pressed again and again: refused, never a failure
        with pytest.raises(LoginDelay):
            fetching.fetch_account(app, account_id)
        acc = _get(app, account_id)
        assert acc.status == AccountStatus.RETRYING.value
        assert acc.consecutive_failures == 0  # no back-off growth, nothing toward disabling
        assert acc.enabled
        assert acc.next_due_at - acc.last_attempt_at == timedelta(seconds=900)
    view = health.status_view(acc)
    assert view.label == "Retrying: The server asks us to wait between checks"
    assert "password" not in view.explanation
    assert srv.logins == 1


def test_out_of_step_server_card_says_so_and_nothing_is_deleted(
        app: Flask, srv: HostilePOP) -> None:
    srv.quirks.login_delay = None
    srv.quirks.extra_line_after = {1: b"+OK\r\n"}
    before = list(srv.messages)
    account_id = _account(app, srv, DeletePolicy.DELETE)
    with pytest.raises(ProtocolOutOfStep):
        fetching.fetch_account(app, account_id)
    view = health.status_view(_get(app, account_id))
    assert view.label == "Retrying: The server's answers got out of step"
    assert "stopped before deleting anything" in view.explanation
    assert "host name and port" not in view.explanation
    assert srv.messages == before
    assert not any(cmd.startswith(b"DELE") for cmd in srv.commands)


def test_huge_mailbox_card_names_the_problem(app: Flask, srv: HostilePOP) -> None:
    srv.quirks.login_delay = None
    srv.quirks.fake_count = 10_000_000
    account_id = _account(app, srv)
    with pytest.raises(ListingTooLarge, match="lists 10,000,000 messages"):
        fetching.fetch_account(app, account_id)
    view = health.status_view(_get(app, account_id))
    assert view.label == ("Needs your attention: The server lists more messages than this "
                          "site fetches at once")
    assert "Delete or archive old mail at the provider" in view.explanation
