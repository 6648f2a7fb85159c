"""A second, minimal host app (not the example): plain Flask + Flask-Login + a bare
SQLAlchemy Engine, CSRF on, one template overridden by the host; accounts sign in to
the session Dovecot for real."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_login import LoginManager, UserMixin, login_user
from sqlalchemy import create_engine

from flask_popaccounts import PopAccounts, get_state
from flask_popaccounts.services import progress
from tests.support.dovecot import Dovecot

from .conftest import account_form, dovecot_config

PREFIX = "/prefs/accounts"


class HostUser(UserMixin):
    def __init__(self, uid: str) -> None:
        self.id = uid


@pytest.fixture
def host(tmp_path: Path, dovecot: Dovecot) -> Iterator[Flask]:
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
        **dovecot_config(dovecot),
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


def _add(client: FlaskClient, mailbox: dict[str, str]) -> int:
    """Add an account through the form (with its CSRF token), tested against Dovecot."""
    token = _token(client.get(PREFIX + "/add/pop3/other").text)
    resp = client.post(PREFIX + "/add/pop3/other",
                       data={**account_form(**mailbox), "csrf_token": token})
    assert resp.status_code == 302, resp.text
    return int(resp.location.split("/")[-2])


def test_registers_and_uses_standalone_layout(host: Flask) -> None:
    client = _client(host)
    resp = client.get(PREFIX + "/")
    assert resp.status_code == 200
    assert "<!doctype html>" in resp.text and "Mail Accounts" in resp.text
    assert f"{PREFIX}/static/popaccounts/style.css" in resp.text
    icon = f"{PREFIX}/static/popaccounts/icon.svg"  # no browser asks for a missing favicon
    assert f'rel="icon" type="image/svg+xml" href="{icon}"' in resp.text
    assert client.get(icon).status_code == 200
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


def test_no_mailbox_endpoint_no_switch_icon(host: Flask, mailbox: dict[str, str]) -> None:
    client = _client(host)
    _add(client, mailbox)
    index = client.get(PREFIX + "/").text
    assert "me@example.com" in index and 'class="pa-switch"' not in index


def test_csrf_required_on_add(host: Flask, mailbox: dict[str, str]) -> None:
    client = _client(host)
    resp = client.post(PREFIX + "/add/pop3/other", data=account_form(**mailbox))
    assert resp.status_code == 400
    assert "CSRF" in resp.text
    resp = client.post(PREFIX + "/add/pop3/other",
                       data={**account_form(**mailbox), "csrf_token": "forged"})
    assert resp.status_code == 400
    assert "No other mailboxes yet" in client.get(PREFIX + "/").text


@pytest.mark.parametrize("action", ["enable", "disable", "default", "check", "delete"])
def test_csrf_required_on_buttons(host: Flask, mailbox: dict[str, str], action: str) -> None:
    client = _client(host)
    account_id = _add(client, mailbox)
    bad = client.post(f"{PREFIX}/{account_id}/{action}")
    assert bad.status_code == 400
    with host.app_context():
        assert progress.fetch_progress(account_id) is None  # no check started
        from flask_popaccounts import db_session
        from flask_popaccounts.storage.models import Account

        acc = db_session().get(Account, account_id)
        assert acc is not None and acc.enabled  # nothing changed, nothing deleted
    page = client.get(PREFIX + "/").text
    good = client.post(f"{PREFIX}/{account_id}/{action}", data={"csrf_token": _token(page)})
    assert good.status_code == 302


def test_other_owner_404_in_host(host: Flask, mailbox: dict[str, str]) -> None:
    client = _client(host, "u1")
    account_id = _add(client, mailbox)
    other = _client(host, "u2")
    assert other.get(f"{PREFIX}/{account_id}/edit").status_code == 404
    assert other.get(f"{PREFIX}/{account_id}/progress.json").status_code == 404


def test_anonymous_without_login_view_gets_401(host: Flask) -> None:
    assert host.test_client().get(PREFIX + "/").status_code == 401
