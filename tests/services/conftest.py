from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from flask_popaccounts import get_state
from tests.support.flaskapp import dispose, make_app


@pytest.fixture
def app(tmp_path, dovecot) -> Iterator[Flask]:
    """A host app whose network policy reaches the session Dovecot (loopback, its CA)."""
    app = make_app(
        tmp_path / "services.db",
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
    with get_state(app).session_factory() as s:
        yield s
