"""The Flask extension object: ``PopAccounts(app=None, *, db=...)`` + ``init_app``.

Modelled on Flask-SQLAlchemy's extension: one object may serve many apps, all state
for an app lives in ``app.extensions["popaccounts"]`` (a
:class:`~.runtime.PopAccountsState`), config keys are ``POPACCOUNTS_*`` with defaults
filled by ``init_app`` (:data:`~.config.DEFAULTS`), and the extension never keeps a
reference to an app. This module is the top of the package: it registers the pages
(``web``) and the jobs (``jobs``); nothing imports it but ``__init__``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app
from sqlalchemy import Engine, create_engine, make_url

from .config import DEFAULTS, trusted_servers
from .engine.clock import Clock
from .hooks import Hooks, merged
from .runtime import PopAccountsState, close_request_session, db_session, get_state
from .storage.crypto import secret_box

__all__ = ["DEFAULTS", "PopAccounts", "PopAccountsState", "db_session", "get_state"]


class PopAccounts:
    """The extension. ``db`` is a Flask-SQLAlchemy object or a SQLAlchemy ``Engine``;
    without one, ``POPACCOUNTS_DATABASE_URI`` is used.

    ``hooks``: the host's :class:`~.hooks.Hooks` (delivery, scanners, quota, user
    look-ups; see :mod:`.hooks`). ``quota`` and ``timezone`` are two of them, also
    accepted here as keywords: the quota hook, owner id -> bytes (None: unlimited;
    without one, ``POPACCOUNTS_QUOTA_BYTES`` applies to every owner, services.quota),
    and the time-zone hook, owner id -> IANA name such as ``"Asia/Riyadh"`` (None: the
    host's Flask-Babel selector, else UTC; see ``i18n``). ``clock``: where "now" comes
    from (default: the system's UTC time; tests inject their own).
    """

    def __init__(self, app: Flask | None = None, *, db: Any = None,
                 mailbox_endpoint: str | None = None,
                 quota: Callable[[str], int | None] | None = None,
                 clock: Clock | None = None,
                 timezone: Callable[[str], str | None] | None = None,
                 hooks: Hooks | None = None) -> None:
        self.db = db
        self.hooks = merged(hooks, quota=quota, timezone=timezone)
        self.mailbox_endpoint = mailbox_endpoint
        self.clock = clock
        if app is not None:
            self.init_app(app)

    @property
    def quota(self) -> Callable[[str], int | None] | None:
        """The quota hook (``hooks.quota``)."""
        return self.hooks.quota

    @quota.setter
    def quota(self, hook: Callable[[str], int | None] | None) -> None:
        self.hooks.quota = hook

    @property
    def timezone(self) -> Callable[[str], str | None] | None:
        """The time-zone hook (``hooks.timezone``)."""
        return self.hooks.timezone

    def init_app(self, app: Flask) -> None:
        if "popaccounts" in app.extensions:
            raise RuntimeError(
                "A 'PopAccounts' instance has already been registered on this Flask app. "
                "Import and use that instance instead."
            )
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        # A malformed trusted pair fails the start-up, not the first fetch hours later.
        trusted_servers(app.config["POPACCOUNTS_TRUSTED_SERVERS"])
        from .web.providers import extra_providers

        extra_providers(app.config)  # likewise a malformed wizard provider
        if self.mailbox_endpoint and not app.config["POPACCOUNTS_MAILBOX_ENDPOINT"]:
            app.config["POPACCOUNTS_MAILBOX_ENDPOINT"] = self.mailbox_endpoint

        development = app.debug or app.testing or os.environ.get("FLASK_DEBUG") == "1"
        state = PopAccountsState(self, self._engine_getter(app),
                                 secret_box(app.config, development=development),
                                 clock=self.clock,
                                 sqlite_busy_timeout=float(
                                     app.config["POPACCOUNTS_SQLITE_BUSY_TIMEOUT"]))
        app.extensions["popaccounts"] = state
        from . import i18n

        i18n.setup(app, timezone_hook=self.hooks.user_timezone)  # (read live)

        from .jobs.cli import popaccounts_cli
        from .web.blueprint import create_blueprint

        app.register_blueprint(
            create_blueprint(app.config["POPACCOUNTS_BLUEPRINT_NAME"]),
            url_prefix=app.config["POPACCOUNTS_URL_PREFIX"],
        )
        app.cli.add_command(popaccounts_cli)
        app.teardown_appcontext(close_request_session)

        if app.config["POPACCOUNTS_SCHEDULER_ENABLED"]:
            from .jobs.scheduler import start_in_process

            start_in_process(app)

    def _engine_getter(self, app: Flask) -> Callable[[], Engine]:
        db = self.db
        if db is None:
            uri = app.config.get("POPACCOUNTS_DATABASE_URI")
            if not uri:
                raise RuntimeError(
                    "PopAccounts needs a database: pass db= (Flask-SQLAlchemy or an Engine) "
                    "or set POPACCOUNTS_DATABASE_URI."
                )
            # Our own engine: a pool with a connection for every fetch worker (one
            # each) and room for the pages beside them.
            workers = max(1, int(app.config["POPACCOUNTS_WORKERS"]))
            options: dict[str, Any] = {}
            url = make_url(uri)
            if url.get_backend_name() != "sqlite" or url.database not in (None, "", ":memory:"):
                options = {"pool_size": workers + 5, "max_overflow": 10}
            return lambda: create_engine(uri, **options)
        if isinstance(db, Engine):
            return lambda: db
        if hasattr(type(db), "engines"):  # Flask-SQLAlchemy 3: engines are per app
            # (checked on the type: the property itself needs an app context)

            def fsa_engine() -> Engine:
                with app.app_context():  # usable from threads and the CLI alike
                    engine: Engine = db.engines[None]
                    return engine

            return fsa_engine
        raise TypeError("db= must be a Flask-SQLAlchemy object or a SQLAlchemy Engine")

    def create_all(self, app: Flask | None = None) -> None:
        """Create the tables directly (tests, quick starts). Production uses migrations."""
        from .storage.models import Base

        app = app or current_app._get_current_object()  # type: ignore[attr-defined]
        Base.metadata.create_all(get_state(app).engine)
