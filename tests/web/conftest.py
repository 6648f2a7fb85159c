"""Fixtures for the page tests: the example webmail on a throwaway instance folder,
signing in to the session Dovecot (tests/conftest.py) for real."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_popaccounts import get_state
from tests.conftest import fresh_source_address
from tests.support.dovecot import GOOD_HOST, Dovecot

PASSWORDS = {"alice": "alice-webmail-pw", "bob": "bob-webmail-pw"}


_TEMPLATE_DB: list[Path] = []  # a migrated database with the users, copied per app (speed)


def make_example(tmp_path: Path, **config: Any) -> Flask:
    """The example app, testing config, users alice and bob with known passwords."""
    from example_app import User, create_app, db

    instance = tmp_path / "instance"
    if _TEMPLATE_DB and _TEMPLATE_DB[0].exists():
        instance.mkdir(parents=True, exist_ok=True)
        shutil.copy(_TEMPLATE_DB[0], instance / "example.db")

    base = {
        "TESTING": True,
        "WTF_CSRF_ENABLED": False,
        "POPACCOUNTS_SCHEDULER_ENABLED": False,
        "EXAMPLE_CREATE_DEMO_USERS": False,
        "SECRET_KEY": "web-tests",
    }
    base.update(config)
    app = create_app(base, instance_path=str(instance))
    with app.app_context():
        if db.session.scalar(db.select(User.id).limit(1)) is None:
            for name, pw in PASSWORDS.items():
                user = User(username=name)
                user.set_password(pw)
                db.session.add(user)
            db.session.commit()
        if not _TEMPLATE_DB:
            db.engine.dispose()
            keep = Path(tempfile.mkdtemp(prefix="example-template-")) / "example.db"
            shutil.copy(instance / "example.db", keep)
            _TEMPLATE_DB.append(keep)
    return app


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def factory(**config: Any) -> Flask:
        app = make_example(tmp_path / f"app{len(apps)}", **config)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        with app.app_context():
            get_state(app).engine.dispose()
            from example_app import db

            db.engine.dispose()


def dovecot_config(dovecot: Dovecot) -> dict[str, Any]:
    """Config that lets the pages reach the session Dovecot: loopback allowed, its CA
    trusted, its two ports allowed beside the standard ones (110 stays allowed and
    closed on loopback: "nothing listens there")."""
    return {
        "POPACCOUNTS_ALLOW_PRIVATE_HOSTS": True,
        "POPACCOUNTS_CA_FILE": dovecot.ca_file,
        "POPACCOUNTS_ALLOWED_POP3_PORTS": (110, 995, dovecot.pop3_port, dovecot.pop3s_port),
        "POPACCOUNTS_CONNECT_TIMEOUT": 5,
        "POPACCOUNTS_READ_TIMEOUT": 20,
    }


@pytest.fixture
def app(make_app: Callable[..., Flask], dovecot: Dovecot) -> Flask:
    """The example webmail, able to sign in to the session Dovecot."""
    return make_app(**dovecot_config(dovecot))


@pytest.fixture
def mailbox(dovecot: Dovecot, new_user: tuple[str, str]) -> dict[str, str]:
    """The add form's server fields for a fresh, empty Dovecot mailbox (implicit TLS)."""
    user, password = new_user
    return {"pop_host": GOOD_HOST, "pop_port": str(dovecot.pop3s_port), "pop_security": "ssl",
            "pop_username": user, "password": password}


@contextmanager
def own_source_address(app: Flask) -> Iterator[None]:
    """Connect from a loopback address of our own while a login is refused on purpose.

    Dovecot delays every later login from an address that failed one (about 4 s);
    refusing from a throwaway address keeps the next sign-ins of this test and of the
    rest of the suite fast.
    """
    before = app.config["POPACCOUNTS_SOURCE_ADDRESS"]
    app.config["POPACCOUNTS_SOURCE_ADDRESS"] = fresh_source_address()[0]
    try:
        yield
    finally:
        app.config["POPACCOUNTS_SOURCE_ADDRESS"] = before


def login(client: FlaskClient, user: str = "alice") -> FlaskClient:
    resp = client.post("/login", data={"username": user, "password": PASSWORDS[user]})
    assert resp.status_code == 302, resp.text
    return client


@pytest.fixture
def alice(app: Flask) -> FlaskClient:
    return login(app.test_client(), "alice")


@pytest.fixture
def bob(app: Flask) -> FlaskClient:
    return login(app.test_client(), "bob")


PREFIX = "/settings/mail-accounts"


def account_form(**over: Any) -> dict[str, Any]:
    data = {
        "email": "me@example.com",
        "name": "Old mail",
        "send_from": "",
        "reply_to": "",
        "pop_host": "pop.example.com",
        "pop_port": "995",
        "pop_security": "ssl",
        "pop_username": "me@example.com",
        "password": "Sup3r-S3cret-pw",
        "delete_policy": "keep",
        "delete_after_days": "7",
        "fetch_interval_minutes": "5",
    }
    data.update(over)
    return data
