"""Fixtures for the deliveries: the platform (a second Dovecot) and host apps with hooks."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_popaccounts import get_state
from flask_popaccounts.engine.types import DeletePolicy, Security
from flask_popaccounts.hooks import Hooks
from flask_popaccounts.services import accounts as svc
from tests.support.dovecot import Dovecot
from tests.support.flaskapp import dispose, make_app
from tests.support.platform import DOMAIN, Platform

OWNER = "owner-1"
_counter = itertools.count(1)


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    """The host's own mail platform: LMTP in, IMAP out, its own users (session-wide)."""
    pf = Platform()
    try:
        yield pf
    finally:
        pf.stop()


@pytest.fixture
def platform_user(platform: Platform) -> str:
    """A fresh user of the platform (its address)."""
    user = f"u{next(_counter)}@{DOMAIN}"
    platform.add_user(user, "platform-secret")
    return user


@pytest.fixture
def host_app(tmp_path: Path, dovecot: Dovecot) -> Iterator[Callable[..., Flask]]:
    """``host_app(hooks, trust=[ca files], **config)``: a host app that reaches the
    outside Dovecot and trusts ``trust`` too (``POPACCOUNTS_CA_FILE`` is one bundle)."""
    apps: list[Flask] = []

    def build(hooks: Hooks | None = None, *, trust: tuple[str, ...] = (),
              **config: Any) -> Flask:
        bundle = tmp_path / f"ca{len(apps)}.pem"
        bundle.write_bytes(b"".join(Path(f).read_bytes() for f in (dovecot.ca_file, *trust)))
        app = make_app(tmp_path / f"host{len(apps)}.db", hooks=hooks,
                       POPACCOUNTS_ALLOWED_POP3_PORTS=(dovecot.pop3s_port,),
                       POPACCOUNTS_CA_FILE=str(bundle), POPACCOUNTS_CONNECT_TIMEOUT=5,
                       POPACCOUNTS_READ_TIMEOUT=20, **config)
        apps.append(app)
        return app

    yield build
    for app in apps:
        dispose(app)


def add_account(app: Flask, dovecot: Dovecot, user: str, password: str, *,
                delete: DeletePolicy = DeletePolicy.DELETE) -> int:
    """An account on the outside Dovecot (delete after storing, unless told); its id."""
    with app.app_context(), get_state(app).session_factory() as session:
        data = svc.AccountInput(
            email=f"{user}@example.net", name=user, send_from="", reply_to="",
            is_default=True, provider="other", pop_host=dovecot.host,
            pop_port=dovecot.pop3s_port, pop_security=Security.SSL, pop_username=user,
            password=password, delete_policy=delete, delete_after_days=0,
            fetch_interval_minutes=5)
        return int(svc.create_account(app, session, OWNER, data).id)
