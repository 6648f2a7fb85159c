"""Fixtures for the page tests: the example webmail on a throwaway instance folder."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_popaccounts import get_state

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


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


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
