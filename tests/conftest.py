"""Shared fixtures: one private Dovecot for the whole session (see tests/support/dovecot.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

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
