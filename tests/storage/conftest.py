from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from tests.support.flaskapp import dispose, make_app


@pytest.fixture
def app(tmp_path) -> Iterator[Flask]:
    app = make_app(tmp_path / "store.db")
    with app.app_context():
        yield app
    dispose(app)


@pytest.fixture
def session(app):
    from flask_popaccounts import get_state

    with get_state(app).session_factory() as s:
        yield s

