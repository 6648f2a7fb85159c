"""A second, minimal host app (not the example): plain Flask + Flask-Login + a bare
SQLAlchemy Engine, CSRF on, one template overridden by the host."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_login import LoginManager, UserMixin, login_user
from sqlalchemy import create_engine

from flask_popaccounts import PopAccounts, get_state
from flask_popaccounts.services import accounts as account_svc

from .conftest import account_form

PREFIX = "/prefs/accounts"


class HostUser(UserMixin):
    def __init__(self, uid: str) -> None:
        self.id = uid


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Flask]:
    templates = tmp_path / "templates" / "popaccounts"
    templates.mkdir(parents=True)
    (templates / "add_type.html").write_text(
        '{% extends "popaccounts/base.html" %}{% block pa_content %}'
        '<h1>Host-branded step one</h1><a href="{{ url_for(\'popaccounts.add_provider\') }}">'
        "POP3</a>{% endblock %}"
    )
    app = Flask("minimal_host", template_folder=str(tmp_path / "templates"))
    app.config.update(
        TESTING=True,
        SECRET_KEY="host-secret",
        WTF_CSRF_ENABLED=True,
        POPACCOUNTS_URL_PREFIX=PREFIX,
    )
    engine = create_engine(f"sqlite:///{tmp_path / 'host.db'}")
    login = LoginManager(app)
    login.user_loader(HostUser)

    @app.route("/signin/<uid>")
    def signin(uid: str) -> str:
        login_user(HostUser(uid))
        return "ok"

    ext = PopAccounts(app, db=engine)
    with app.app_context():
        ext.create_all(app)
    yield app
    engine.dispose()


def _client(app: Flask, uid: str = "u1") -> FlaskClient:
    client = app.test_client()
    assert client.get(f"/signin/{uid}").status_code == 200
    return client


def _token(html: str) -> str:
    m = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


@pytest.fixture
def tested(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(account_svc, "test_incoming",
                        lambda app, data, *, existing=None: frozenset())


def test_registers_and_uses_standalone_layout(host: Flask) -> None:
    client = _client(host)
    resp = client.get(PREFIX + "/")
    assert resp.status_code == 200
    assert "<!doctype html>" in resp.text and "Mail Accounts" in resp.text
    assert f"{PREFIX}/static/popaccounts/style.css" in resp.text
    assert "popaccounts" in host.extensions
    with pytest.raises(RuntimeError):
        PopAccounts(host, db=get_state(host).engine)


def test_host_overrides_one_template(host: Flask) -> None:
    client = _client(host)
    resp = client.get(PREFIX + "/add")
    assert "Host-branded step one" in resp.text
    assert "popaccounts/style.css" in resp.text  # still inside our base
    # the other templates are still the package's own
    assert "Who provides this mailbox?" in client.get(PREFIX + "/add/pop3").text


def test_no_mailbox_endpoint_no_switch_icon(host: Flask, tested: None) -> None:
    client = _client(host)
    page = client.get(PREFIX + "/add/pop3/other")
    resp = client.post(PREFIX + "/add/pop3/other",
                       data={**account_form(), "csrf_token": _token(page.text)})
    assert resp.status_code == 302
    assert 'class="pa-switch"' not in client.get(PREFIX + "/").text


def test_csrf_required_on_add(host: Flask, tested: None) -> None:
    client = _client(host)
    resp = client.post(PREFIX + "/add/pop3/other", data=account_form())
    assert resp.status_code == 400
    assert "CSRF" in resp.text
    resp = client.post(PREFIX + "/add/pop3/other",
                       data={**account_form(), "csrf_token": "forged"})
    assert resp.status_code == 400


@pytest.mark.parametrize("action", ["enable", "disable", "default", "check", "delete"])
def test_csrf_required_on_buttons(host: Flask, tested: None, monkeypatch: pytest.MonkeyPatch,
                                  action: str) -> None:
    from flask_popaccounts.services import fetching

    called: list[Any] = []

    def fake_check(app: Flask, aid: int) -> bool:
        called.append(aid)
        return True

    monkeypatch.setattr(fetching, "check_now", fake_check)
    client = _client(host)
    token = _token(client.get(PREFIX + "/add/pop3/other").text)
    resp = client.post(PREFIX + "/add/pop3/other", data={**account_form(), "csrf_token": token})
    account_id = int(resp.location.split("/")[-2])
    bad = client.post(f"{PREFIX}/{account_id}/{action}")
    assert bad.status_code == 400
    assert not called
    with host.app_context():
        from flask_popaccounts import db_session
        from flask_popaccounts.storage.models import Account

        acc = db_session().get(Account, account_id)
        assert acc is not None and acc.enabled  # nothing changed, nothing deleted
    page = client.get(PREFIX + "/").text
    good = client.post(f"{PREFIX}/{account_id}/{action}", data={"csrf_token": _token(page)})
    assert good.status_code == 302


def test_other_owner_404_in_host(host: Flask, tested: None) -> None:
    client = _client(host, "u1")
    token = _token(client.get(PREFIX + "/add/pop3/other").text)
    resp = client.post(PREFIX + "/add/pop3/other", data={**account_form(), "csrf_token": token})
    account_id = int(resp.location.split("/")[-2])
    other = _client(host, "u2")
    assert other.get(f"{PREFIX}/{account_id}/edit").status_code == 404
    assert other.get(f"{PREFIX}/{account_id}/progress.json").status_code == 404


def test_anonymous_without_login_view_gets_401(host: Flask) -> None:
    assert host.test_client().get(PREFIX + "/").status_code == 401
