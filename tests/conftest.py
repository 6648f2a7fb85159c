"""Shared fixtures: one private Dovecot for the whole session (see tests/support/dovecot.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from flask_popaccounts.engine.types import NetPolicy
from tests.support.clock import FakeClock
from tests.support.dovecot import Dovecot

_user_counter = itertools.count(1)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """A running Dovecot (STLS on ``pop3_port``, implicit TLS on ``pop3s_port``).

    Session-scoped and shared: create your own user per test (``new_user``) rather
    than reusing another test's mailbox.
    """
    dc = Dovecot()
    try:
        yield dc
    finally:
        dc.stop()


@pytest.fixture
def new_user(dovecot: Dovecot) -> tuple[str, str]:
    """A fresh user with an empty mailbox on the session Dovecot: ``(name, password)``."""
    n = next(_user_counter)
    user, password = f"user{n}", f"secret-{n}"
    dovecot.add_user(user, password)
    return user, password


@pytest.fixture
def dovecot_net(dovecot: Dovecot) -> NetPolicy:
    """A NetPolicy that lets the engine reach the test Dovecot (loopback, its ports, its CA)."""
    return NetPolicy(
        allow_private=True,
        allowed_ports=frozenset({dovecot.pop3_port, dovecot.pop3s_port}),
        ca_file=dovecot.ca_file,
        connect_timeout=5,
        read_timeout=20,
    )


_source_counter = itertools.count(1)


def fresh_source_address() -> tuple[str, int]:
    """A loopback source address no other test used (127.0.1.N).

    Dovecot delays every later login from an IP that failed one (its anvil "auth
    penalty", up to 15 s); tests that fail a login on purpose connect from their own
    address so the rest of the suite stays fast.
    """
    return (f"127.0.1.{next(_source_counter)}", 0)


@pytest.fixture(autouse=True)
def _no_check_now_left_behind():
    """A test's "check now" threads finish before the next test starts (they would
    otherwise go on logging in to the shared Dovecot). Their registries are per app,
    so nothing is left to forget."""
    yield
    import threading

    for thread in threading.enumerate():
        if thread.name.startswith("popaccounts-check-"):
            thread.join(timeout=60)


@pytest.fixture(scope="session")
def postgres():
    """One throwaway PostgreSQL cluster for the session; each test makes its own database
    with ``postgres.create_database()``."""
    from tests.support.postgres import PostgresCluster, pg_bin

    if pg_bin() is None:
        pytest.fail("PostgreSQL is not installed: run scripts/install-system-deps.sh")
    cluster = PostgresCluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def app(tmp_path, dovecot):
    """A host app whose network policy reaches the session Dovecot (loopback, its CA).
    Test folders that need another host app define their own ``app``."""
    from tests.support.flaskapp import dispose, make_app

    app = make_app(
        tmp_path / "host.db",
        POPACCOUNTS_ALLOWED_POP3_PORTS=(dovecot.pop3_port, dovecot.pop3s_port),
        POPACCOUNTS_CA_FILE=dovecot.ca_file,
        POPACCOUNTS_CONNECT_TIMEOUT=5,
        POPACCOUNTS_READ_TIMEOUT=20,
    )
    with app.app_context():
        yield app
    dispose(app)


@pytest.fixture
def session(app):
    """A session of the app's own session factory (closed after the test)."""
    from flask_popaccounts import get_state

    with get_state(app).session_factory() as s:
        yield s


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock that stands still until the test moves it (``advance``, ``set``): pass it
    as ``PopAccounts(app, clock=...)`` or put it on a built app with
    ``tests.support.clock.use_clock``."""
    return FakeClock()
