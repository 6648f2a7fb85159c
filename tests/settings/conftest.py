"""Fixtures for the per-account settings tests (signatures, templates, storage).

A plain host app for the service-level quota tests, and the sending fixtures
(aiosmtpd servers, the example webmail able to reach them and Dovecot) for the pages.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from flask_popaccounts import get_state
from tests.sending.conftest import send_app, smtp_user, smtpd  # noqa: F401 (fixtures)
from tests.support.dovecot import Dovecot
from tests.support.flaskapp import dispose, make_app


@pytest.fixture
def app(tmp_path: Path, dovecot: Dovecot) -> Iterator[Flask]:
    """A host app whose network policy reaches the session Dovecot (loopback, its CA)."""
    app = make_app(
        tmp_path / "settings.db",
        POPACCOUNTS_ALLOWED_POP3_PORTS=(dovecot.pop3_port, dovecot.pop3s_port),
        POPACCOUNTS_CA_FILE=dovecot.ca_file,
        POPACCOUNTS_CONNECT_TIMEOUT=5,
        POPACCOUNTS_READ_TIMEOUT=20,
    )
    with app.app_context():
        yield app
    dispose(app)


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    with get_state(app).session_factory() as s:
        yield s
