"""Problem messages, from the user's side: what is stored, what the card says, what the
server was asked. Against tests/support/hostilepop.py (Dovecot cannot misbehave so),
through the services and the real SQL store; the last test on PostgreSQL.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, g
from sqlalchemy import select

from flask_popaccounts import get_state
from flask_popaccounts.engine.errors import ConnectionFailed
from flask_popaccounts.engine.types import DeletePolicy, Security
from flask_popaccounts.services import accounts as svc
from flask_popaccounts.services import fetching, health
from flask_popaccounts.storage import mailbox
from flask_popaccounts.storage.models import Account, UidlEntry
from tests.support.clock import FakeClock, use_clock
from tests.support.flaskapp import dispose, make_app
from tests.support.hostilepop import PASSWORD, USER, HostilePOP
from tests.support.mail import make_message

OWNER = "owner-1"
PREFIX = "/settings/mail-accounts"


@pytest.fixture
def srv() -> Iterator[HostilePOP]:
    raws = [make_message(i, subject=f"message {i}") for i in range(6)]
    with HostilePOP([(b"u%d" % i, r) for i, r in enumerate(raws)]) as server:
        yield server


def _app(srv: HostilePOP, db: Path | str) -> Flask:
    return make_app(db, POPACCOUNTS_ALLOWED_POP3_PORTS=(srv.port,),
                    POPACCOUNTS_CA_FILE=srv.ca_file, POPACCOUNTS_CONNECT_TIMEOUT=5,
                    POPACCOUNTS_READ_TIMEOUT=10)


@pytest.fixture
def app(srv: HostilePOP, tmp_path: Path) -> Iterator[Flask]:
    app = _app(srv, tmp_path / "host.db")
    with app.app_context():
        yield app
    dispose(app)


def _account(app: Flask, srv: HostilePOP, **kw: Any) -> int:
    data: dict[str, Any] = dict(
                email="me@example.net", name="me", send_from="", reply_to="", is_default=False,
                provider="other", pop_host="127.0.0.1", pop_port=srv.port,
                pop_security=Security.STARTTLS, pop_username=USER, password=PASSWORD,
                delete_policy=DeletePolicy.KEEP, delete_after_days=0, fetch_interval_minutes=5)
    data.update(kw)
    with get_state(app).session_factory() as session:
        return int(svc.create_account(app, session, OWNER, svc.AccountInput(**data)).id)


def _stored(app: Flask, account_id: int) -> list[bytes]:
    with get_state(app).session_factory() as session:
        return sorted(mailbox.read_raw(session, m.id)
                      for m in mailbox.list_messages(session, account_id))


def _client(app: Flask, owner: str) -> Any:
    g.pop("_login_user", None)  # Flask-Login caches the user on g (the test's app context)
    client = app.test_client()
    with client.session_transaction() as sess:
        sess["_user_id"] = owner
    return client


def _card(app: Flask) -> str:
    client = _client(app, OWNER)
    resp = client.get(PREFIX + "/")
    assert resp.status_code == 200
    return " ".join(html.unescape(resp.text).split())


def _post(app: Flask, account_id: int, what: str, uidl: str, owner: str = OWNER) -> int:
    client = _client(app, owner)
    return client.post(f"{PREFIX}/{account_id}/problems/{what}", data={"uidl": uidl}).status_code


def test_a_cut_keeps_complete_messages_and_three_cuts_set_one_aside(
        app: Flask, srv: HostilePOP) -> None:
    raws = [raw for _u, raw in srv.messages]
    account_id = _account(app, srv)
    srv.quirks.cut_in_message = {4: 100}  # the 4th message's RETR dies after 100 bytes
    for attempt in range(3):
        with pytest.raises(ConnectionFailed):
            fetching.fetch_account(app, account_id)
        # the three before it arrived complete: kept (they were thrown away before)
        assert _stored(app, account_id) == sorted(raws[:3]), attempt
    # set aside after the third failure: the rest of the mailbox comes now
    report = fetching.fetch_account(app, account_id)
    assert report.stored == 2
    assert _stored(app, account_id) == sorted(raws[:3] + raws[4:])
    assert 4 not in srv.retrieved[-2:]  # not asked for again
    card = _card(app)
    assert ("1 message could not be downloaded: the connection broke while it was being "
            "downloaded (3 attempts).") in card
    assert "Retry" in card
    assert _post(app, account_id, "retry", "u3", owner="someone-else") == 404
    assert _post(app, account_id, "retry", "u3") == 302
    srv.quirks.cut_in_message = {}
    assert fetching.fetch_account(app, account_id).stored == 1
    assert _stored(app, account_id) == sorted(raws)
    assert "could not be downloaded" not in _card(app)


def test_a_message_refused_three_times_is_set_aside_and_named(
        app: Flask, srv: HostilePOP) -> None:
    account_id = _account(app, srv)
    srv.quirks.retr_error = {2: b"-ERR [SYS/TEMP] storage hiccup"}
    for _ in range(3):
        report = fetching.fetch_account(app, account_id)
        assert report.refused == {"u1": "[SYS/TEMP] storage hiccup"}
    retrs = sum(1 for c in srv.commands if c == b"RETR 2")
    assert fetching.fetch_account(app, account_id).refused == {}
    assert sum(1 for c in srv.commands if c == b"RETR 2") == retrs  # not asked again
    assert len(_stored(app, account_id)) == 5
    assert ("1 message could not be downloaded: the server refused to send it "
            "(3 attempts).") in _card(app)
    app.config["WTF_CSRF_ENABLED"] = True
    assert _post(app, account_id, "retry", "u1") == 400  # no CSRF token: refused
    assert "could not be downloaded" in _card(app)
    app.config["WTF_CSRF_ENABLED"] = False
    srv.quirks.retr_error = {}
    assert _post(app, account_id, "retry", "u1") == 302
    assert fetching.fetch_account(app, account_id).stored == 1
    assert len(_stored(app, account_id)) == 6


def test_too_large_messages_are_shown_need_no_list_when_idle_and_can_be_fetched_anyway(
        app: Flask, srv: HostilePOP) -> None:
    big = make_message(9, subject="Holiday photos", body_size=20_000)
    srv.messages.append((b"big", big))
    account_id = _account(app, srv)
    with get_state(app).session_factory() as session:
        session.get(Account, account_id).max_message_size = 10_000  # type: ignore[union-attr]
        session.commit()
    report = fetching.fetch_account(app, account_id)
    assert report.stored == 6 and list(report.too_large) == ["big"]
    card = _card(app)
    assert "1 message over this account's size limit stays on the server:" in card
    assert "“Holiday photos” from" in card and "Fetch anyway" in card
    fetching.fetch_account(app, account_id)  # idle: nothing new but the known big one
    assert b"LIST" not in srv.sessions[-1]
    assert _post(app, account_id, "fetch-anyway", "big") == 302
    assert fetching.fetch_account(app, account_id).stored == 1
    assert big in _stored(app, account_id)
    assert "size limit" not in _card(app)


def test_dele_refused_is_named_and_not_resent_every_session(app: Flask, srv: HostilePOP) -> None:
    clock = FakeClock()
    use_clock(app, clock)
    account_id = _account(app, srv, delete_policy=DeletePolicy.DELETE)
    srv.quirks.dele_error = b"-ERR [SYS/PERM] deleting is not allowed here"
    assert fetching.fetch_account(app, account_id).stored == 6
    with get_state(app).session_factory() as session:
        view = health.status_view(session.get(Account, account_id))  # type: ignore[arg-type]
    assert view.label == "Working, but the server refuses to delete mail"
    assert "6 messages stored here are still on the server: the server refused to delete " \
        "them." in _card(app)
    fetching.fetch_account(app, account_id)
    assert not any(c.startswith(b"DELE") for c in srv.sessions[-1])  # held for a day
    assert len(srv.messages) == 6
    clock.advance(hours=25)  # a day later: tried once more, then held again
    fetching.fetch_account(app, account_id)
    assert sum(1 for c in srv.sessions[-1] if c.startswith(b"DELE")) == 6
    clock.advance(hours=1)
    fetching.fetch_account(app, account_id)
    assert not any(c.startswith(b"DELE") for c in srv.sessions[-1])
    srv.quirks.dele_error = None  # the provider fixed it: deleted the day after, warning gone
    clock.advance(hours=25)
    fetching.fetch_account(app, account_id)
    assert srv.messages == []
    fetching.fetch_account(app, account_id)
    assert "Working, but" not in _card(app) and "still on the server" not in _card(app)


def test_dele_accepted_but_ignored_is_detected_next_session(app: Flask, srv: HostilePOP) -> None:
    clock = FakeClock()
    use_clock(app, clock)
    account_id = _account(app, srv, delete_policy=DeletePolicy.DELETE)
    srv.quirks.dele_ignored = True
    assert fetching.fetch_account(app, account_id).deleted == 6  # it said +OK...
    report = fetching.fetch_account(app, account_id)
    assert len(report.reappeared) == 6 and report.stored == 0  # ...and still lists them
    card = _card(app)
    assert "Working, but the server does not delete mail" in card
    assert "the server said it deleted them, but still lists them." in card
    fetching.fetch_account(app, account_id)
    assert not any(c.startswith(b"DELE") for c in srv.sessions[-1])
    assert len(_stored(app, account_id)) == 6  # never fetched twice
    clock.advance(hours=25)  # tried again a day later: not counted as deleted this time
    report = fetching.fetch_account(app, account_id)
    assert sum(1 for c in srv.sessions[-1] if c.startswith(b"DELE")) == 6
    assert report.deleted == 0 and "does not delete mail" in _card(app)


def test_repeated_uidls_are_named_on_the_card(app: Flask, srv: HostilePOP) -> None:
    srv.messages[1] = (b"u0", srv.messages[1][1])
    account_id = _account(app, srv)
    assert fetching.fetch_account(app, account_id).stored == 6
    assert "This server gives 2 messages the same id; both were downloaded." in _card(app)


def test_long_and_control_char_uidls_commit_on_postgresql(srv: HostilePOP, postgres: Any) -> None:
    srv.messages[0] = (b"x" * 100, srv.messages[0][1])
    srv.messages[1] = (b"ctl\x01char", srv.messages[1][1])
    raws = sorted(raw for _u, raw in srv.messages)
    app = _app(srv, postgres.create_database())
    try:
        with app.app_context():
            account_id = _account(app, srv)
            report = fetching.fetch_account(app, account_id)
            assert report.stored == 6 and report.uidl_nonconforming == 2
            assert _stored(app, account_id) == raws
            with get_state(app).session_factory() as session:
                keys = session.scalars(select(UidlEntry.uidl)).all()
            assert len(keys) == 6 and max(map(len, keys)) <= 70
            assert fetching.fetch_account(app, account_id).stored == 0
            assert "2 messages an id POP3 does not allow" in _card(app)
    finally:
        dispose(app)
