"""A minimal host app for storage/services tests: Flask-SQLAlchemy + Flask-Login + PopAccounts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from flask_login import LoginManager, UserMixin
from flask_sqlalchemy import SQLAlchemy

from flask_popaccounts import PopAccounts, get_state


class User(UserMixin):
    def __init__(self, uid: str) -> None:
        self.id = uid


def make_app(db_path: Path | str, *, create: bool = True, hooks: Any = None,
             **config: Any) -> Flask:
    """A testing app on a SQLite file; tables created with create_all unless told not to.
    ``hooks``: the host's :class:`flask_popaccounts.hooks.Hooks` (None: the defaults)."""
    app = Flask("popaccounts_test_host")
    uri = db_path if str(db_path).startswith(("sqlite:", "postgresql")) else f"sqlite:///{db_path}"
    app.config.update(
        TESTING=True,
        SECRET_KEY="test-secret-key",
        SQLALCHEMY_DATABASE_URI=uri,
        WTF_CSRF_ENABLED=False,
        POPACCOUNTS_ALLOW_PRIVATE_HOSTS=True,
    )
    app.config.update(config)
    db = SQLAlchemy()
    db.init_app(app)
    login = LoginManager(app)
    login.user_loader(User)
    PopAccounts(app, db=db, hooks=hooks)
    if create:
        with app.app_context():
            app.extensions["popaccounts"].ext.create_all(app)
    app.extensions["test_db"] = db
    return app


def dispose(app: Flask) -> None:
    with app.app_context():
        get_state(app).engine.dispose()
