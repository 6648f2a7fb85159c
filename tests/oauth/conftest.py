"""Fixtures for the OAuth tests: a real Authlib authorization server, a Dovecot whose
``oauth2`` passdb asks that server about every XOAUTH2 token, and the example webmail
configured with both (the Microsoft presets pointed at the local server)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.authserver import AuthServer
from tests.support.clock import FakeClock
from tests.support.dovecot import Dovecot
from tests.web.conftest import login, make_app  # noqa: F401 (fixture)

CLIENT_ID = "webmail-test"
CLIENT_SECRET = "webmail-test-secret"
PREFIX = "/settings/mail-accounts"
TEST_CLIENT_CALLBACK = f"http://localhost{PREFIX}/oauth/callback"

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def authsrv() -> Iterator[AuthServer]:
    srv = AuthServer()
    srv.add_client(CLIENT_ID, CLIENT_SECRET, [TEST_CLIENT_CALLBACK])
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(autouse=True)
def _default_lifetime(authsrv: AuthServer) -> Iterator[None]:
    yield
    authsrv.access_token_lifetime = 3600


@pytest.fixture
def clock(authsrv: AuthServer, fake_clock: FakeClock) -> Iterator[FakeClock]:
    """One fake clock for the test's apps (``use_clock(app, clock)``) and the
    authorization server: moving it on expires tokens at both ends, without waiting."""
    authsrv.clock = fake_clock.timestamp
    try:
        yield fake_clock
    finally:
        authsrv.clock = time.time


@pytest.fixture(scope="session")
def oauth_dovecot(authsrv: AuthServer) -> Iterator[Dovecot]:
    """Dovecot with passwd-file logins and an ``oauth2`` passdb (XOAUTH2, OAUTHBEARER)."""
    dc = Dovecot(oauth2_introspection_url=authsrv.introspection_url, lock_session=False)
    try:
        yield dc
    finally:
        dc.stop()


@dataclass
class MsUser:
    """A person with a mailbox on Dovecot and an account at the identity provider."""

    username: str
    password: str
    email: str


@pytest.fixture
def ms_user(authsrv: AuthServer, oauth_dovecot: Dovecot) -> MsUser:
    n = next(_counter)
    user = MsUser(f"ms{n}", f"ms{n}-provider-pw", f"ms{n}@contoso.com")
    authsrv.add_user(user.username, user.password, user.email)
    # The mailbox is named by the address (what XOAUTH2 sends as user=); its passwd-file
    # password is only used by the "switch a password account" test.
    oauth_dovecot.add_user(user.email, f"pop-pw-{n}")
    return user


def oauth_config(authsrv: AuthServer, dc: Dovecot, **over: Any) -> dict[str, Any]:
    """Example-app config: the Microsoft presets aimed at the local servers."""
    endpoints = {"authorize_url": authsrv.authorize_url, "token_url": authsrv.token_url,
                 "revoke_url": authsrv.revoke_url, "pop_host": "127.0.0.1",
                 "pop_port": dc.pop3s_port}
    config: dict[str, Any] = {
        "POPACCOUNTS_ALLOW_PRIVATE_HOSTS": True,
        "POPACCOUNTS_CA_FILE": dc.ca_file,
        "POPACCOUNTS_ALLOWED_POP3_PORTS": (110, 995, dc.pop3_port, dc.pop3s_port),
        "POPACCOUNTS_CONNECT_TIMEOUT": 5,
        "POPACCOUNTS_READ_TIMEOUT": 20,
        "POPACCOUNTS_MICROSOFT_CLIENT_ID": CLIENT_ID,
        "POPACCOUNTS_MICROSOFT_CLIENT_SECRET": CLIENT_SECRET,
        "POPACCOUNTS_OAUTH_PROVIDERS": {"outlook": endpoints, "office365": dict(endpoints)},
        "POPACCOUNTS_OAUTH_TIMEOUT": 5,
    }
    config.update(over)
    return config


@pytest.fixture
def make_oauth_app(make_app: Callable[..., Flask], authsrv: AuthServer,  # noqa: F811
                   oauth_dovecot: Dovecot) -> Callable[..., Flask]:
    """Example webmails wired to the test authorization server and its Dovecot."""
    return lambda **over: make_app(**oauth_config(authsrv, oauth_dovecot, **over))


@pytest.fixture
def oauth_app(make_oauth_app: Callable[..., Flask]) -> Flask:
    return make_oauth_app()


@pytest.fixture
def client(oauth_app: Flask) -> FlaskClient:
    return login(oauth_app.test_client(), "alice")


def mail(subject: str, i: int = 1) -> bytes:
    return (f"From: Friend <friend{i}@example.org>\r\nTo: someone@example.test\r\n"
            f"Subject: {subject}\r\nDate: Tue, 01 Jul 2025 09:00:00 +0000\r\n"
            f"Message-ID: <oauth-{i}-{next(_counter)}@example.org>\r\n\r\n"
            f"Hello from {subject}.\r\n").encode()
