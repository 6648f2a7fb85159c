"""The Flask extension object: ``PopAccounts(app=None, *, db=...)`` + ``init_app``.

Modelled on Flask-SQLAlchemy's extension: one object may serve many apps, all state
for an app lives in ``app.extensions["popaccounts"]`` (a :class:`PopAccountsState`),
config keys are ``POPACCOUNTS_*`` with defaults filled by ``init_app``, and the
extension never keeps a reference to an app.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from .engine.types import NetPolicy
from .secrets import SecretBox, SecretKeyMissing, derive_dev_key, parse_keys

log = logging.getLogger("flask_popaccounts")

#: Every config key with its default. The README documents each one.
DEFAULTS: dict[str, Any] = {
    # Storage
    "POPACCOUNTS_DATABASE_URI": None,  # used only when no db= is given
    "POPACCOUNTS_SECRET_KEYS": None,  # Fernet keys, first one encrypts
    "POPACCOUNTS_QUOTA_BYTES": None,  # per-user storage quota (None: unlimited)
    # Network policy
    "POPACCOUNTS_ALLOW_PRIVATE_HOSTS": False,  # allow loopback/private servers (tests, on-premise)
    "POPACCOUNTS_ALLOWED_POP3_PORTS": (110, 995),
    "POPACCOUNTS_ALLOWED_SMTP_PORTS": (465, 587),
    "POPACCOUNTS_ALLOW_PLAINTEXT": False,  # allow "Plain" (no TLS) connections
    "POPACCOUNTS_CA_FILE": None,  # extra CA bundle on top of the system trust store
    "POPACCOUNTS_CONNECT_TIMEOUT": 15.0,
    "POPACCOUNTS_READ_TIMEOUT": 60.0,
    "POPACCOUNTS_SESSION_TIMEOUT": 1800.0,  # one POP3 session at most (trickling servers)
    "POPACCOUNTS_SOURCE_ADDRESS": None,  # bind outgoing connections (tests)
    # Sending (R9-R11): the host's system mailer, for confirmation codes and for accounts
    # without their own SMTP server
    "POPACCOUNTS_SYSTEM_SMTP_HOST": None,  # None: no system mailer (no codes can be sent)
    "POPACCOUNTS_SYSTEM_SMTP_PORT": 587,
    "POPACCOUNTS_SYSTEM_SMTP_SECURITY": "starttls",  # "ssl" | "starttls" | "plain"
    "POPACCOUNTS_SYSTEM_SMTP_USERNAME": None,
    "POPACCOUNTS_SYSTEM_SMTP_PASSWORD": None,
    "POPACCOUNTS_SYSTEM_SMTP_FROM": None,  # the codes' From, and the relay's envelope sender
    "POPACCOUNTS_SYSTEM_SMTP_CA_FILE": None,  # default: POPACCOUNTS_CA_FILE
    "POPACCOUNTS_SMTP_LOCAL_HOSTNAME": "localhost",  # our EHLO name
    "POPACCOUNTS_SITE_NAME": None,  # named in the confirmation emails
    "POPACCOUNTS_VERIFICATION_CODE_TTL": 24 * 3600,  # seconds a code stays valid
    "POPACCOUNTS_VERIFICATION_CODE_DIGITS": 6,  # at least 6
    "POPACCOUNTS_VERIFICATION_MAX_ATTEMPTS": 5,  # wrong tries before a code is locked
    "POPACCOUNTS_VERIFICATION_RESEND_SECONDS": 60,  # minimum time between two codes
    "POPACCOUNTS_VERIFICATION_MAX_SENDS_PER_DAY": 5,  # codes per address per 24 h
    # Retrieval
    "POPACCOUNTS_MAX_MESSAGE_SIZE": 50 * 1024 * 1024,
    "POPACCOUNTS_MAX_MESSAGES_PER_SESSION": 1000,
    "POPACCOUNTS_DEFAULT_INTERVAL_MINUTES": 5,
    "POPACCOUNTS_MIN_INTERVAL_MINUTES": 3,  # the allowed range of per-account intervals
    "POPACCOUNTS_MAX_INTERVAL_MINUTES": 60,
    "POPACCOUNTS_BACKOFF_BASE_SECONDS": 60,  # first retry after a transient failure
    "POPACCOUNTS_BACKOFF_MAX_SECONDS": 3600,  # back-off cap (doubling, with jitter)
    # Scheduling
    "POPACCOUNTS_SCHEDULER_ENABLED": False,
    "POPACCOUNTS_SCHEDULER_TICK_SECONDS": 30,
    "POPACCOUNTS_WORKERS": 16,  # fetches at once per process (mostly waiting on the network)
    "POPACCOUNTS_LEASE_SECONDS": 600,
    # Pages
    "POPACCOUNTS_URL_PREFIX": "/settings/mail-accounts",
    "POPACCOUNTS_MAILBOX_ENDPOINT": None,  # host endpoint taking account_id= (R8)
    "POPACCOUNTS_BASE_TEMPLATE": None,  # host layout the pages extend (blocks title/head/content)
    "POPACCOUNTS_LANG": "en",  # lang= of the standalone layout
    "POPACCOUNTS_TEXT_DIRECTION": "ltr",  # dir= of the standalone layout ("rtl" for Arabic)
    # OAuth (Outlook.com / Office 365; see services/oauth.py)
    "POPACCOUNTS_MICROSOFT_CLIENT_ID": None,  # the host's Microsoft app registration
    "POPACCOUNTS_MICROSOFT_CLIENT_SECRET": None,
    "POPACCOUNTS_MICROSOFT_OFFICE365_TENANT": "organizations",  # or "common" / a tenant id
    "POPACCOUNTS_OAUTH_PROVIDERS": {},  # per-provider overrides: {"outlook": {"token_url": ..}}
    "POPACCOUNTS_OAUTH_REDIRECT_URI": None,  # fixed callback URL (default: built from request)
    "POPACCOUNTS_OAUTH_REFRESH_MARGIN_SECONDS": 300,  # refresh when expiring within this
    "POPACCOUNTS_OAUTH_TIMEOUT": 15.0,  # seconds for token requests
}


class PopAccountsState:
    """Everything the extension keeps for one app."""

    def __init__(self, ext: PopAccounts, app: Flask, engine_getter: Callable[[], Engine]) -> None:
        self.ext = ext
        self._engine_getter = engine_getter
        self._engine: Engine | None = None
        self._session_factory: sessionmaker[Session] | None = None
        self._lock = threading.Lock()
        self.secrets = _secret_box(app)
        self.scheduler: Any = None  # set by the scheduler module when it runs

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    engine = self._engine_getter()
                    _tune_sqlite(engine)
                    self._engine = engine
        return self._engine

    @property
    def session_factory(self) -> sessionmaker[Session]:
        """New independent sessions, for background work (scheduler, CLI)."""
        if self._session_factory is None:
            self._session_factory = sessionmaker(bind=self.engine, expire_on_commit=False)
        return self._session_factory

    def net_policy(self, config: dict[str, Any], *,
                   ports_key: str = "POPACCOUNTS_ALLOWED_POP3_PORTS") -> NetPolicy:
        src = config.get("POPACCOUNTS_SOURCE_ADDRESS")
        return NetPolicy(
            allow_private=bool(config["POPACCOUNTS_ALLOW_PRIVATE_HOSTS"]),
            allowed_ports=frozenset(int(p) for p in config[ports_key]),
            allow_plaintext=bool(config["POPACCOUNTS_ALLOW_PLAINTEXT"]),
            ca_file=config.get("POPACCOUNTS_CA_FILE"),
            connect_timeout=float(config["POPACCOUNTS_CONNECT_TIMEOUT"]),
            read_timeout=float(config["POPACCOUNTS_READ_TIMEOUT"]),
            session_timeout=(None if config.get("POPACCOUNTS_SESSION_TIMEOUT") is None
                             else float(config["POPACCOUNTS_SESSION_TIMEOUT"])),
            source_address=(src, 0) if isinstance(src, str) else src,
        )


class PopAccounts:
    """The extension. ``db`` is a Flask-SQLAlchemy object or a SQLAlchemy ``Engine``;
    without one, ``POPACCOUNTS_DATABASE_URI`` is used.
    """

    def __init__(self, app: Flask | None = None, *, db: Any = None,
                 mailbox_endpoint: str | None = None,
                 quota: Callable[[str], int | None] | None = None) -> None:
        self.db = db
        self.mailbox_endpoint = mailbox_endpoint
        #: the host's quota hook: owner id -> bytes (None: unlimited); without one,
        #: POPACCOUNTS_QUOTA_BYTES applies to every owner (services.quota)
        self.quota = quota
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if "popaccounts" in app.extensions:
            raise RuntimeError(
                "A 'PopAccounts' instance has already been registered on this Flask app. "
                "Import and use that instance instead."
            )
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        if self.mailbox_endpoint and not app.config["POPACCOUNTS_MAILBOX_ENDPOINT"]:
            app.config["POPACCOUNTS_MAILBOX_ENDPOINT"] = self.mailbox_endpoint

        state = PopAccountsState(self, app, self._engine_getter(app))
        app.extensions["popaccounts"] = state

        from .cli import popaccounts_cli
        from .views import create_blueprint

        app.register_blueprint(
            create_blueprint(), url_prefix=app.config["POPACCOUNTS_URL_PREFIX"]
        )
        app.cli.add_command(popaccounts_cli)
        app.teardown_appcontext(_close_request_session)

        if app.config["POPACCOUNTS_SCHEDULER_ENABLED"]:
            from .scheduler import start_in_process

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
            return lambda: create_engine(uri)
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
        from .models import Base

        app = app or current_app._get_current_object()  # type: ignore[attr-defined]
        Base.metadata.create_all(get_state(app).engine)


def get_state(app: Flask | None = None) -> PopAccountsState:
    app = app or current_app
    try:
        state: PopAccountsState = app.extensions["popaccounts"]
        return state
    except KeyError:
        raise RuntimeError("PopAccounts is not registered on this app") from None


def db_session() -> Session:
    """The session for this request/app context, closed at teardown."""
    sess: Session | None = g.get("_popaccounts_session")
    if sess is None:
        sess = get_state().session_factory()
        g._popaccounts_session = sess
    return sess


def _close_request_session(exc: BaseException | None) -> None:
    sess: Session | None = g.pop("_popaccounts_session", None)
    if sess is not None:
        if exc is not None:
            sess.rollback()
        sess.close()


def _secret_box(app: Flask) -> SecretBox:
    keys = parse_keys(app.config.get("POPACCOUNTS_SECRET_KEYS"))
    if not keys:
        if app.debug or app.testing or os.environ.get("FLASK_DEBUG") == "1":
            secret = app.config.get("SECRET_KEY")
            if not secret:
                raise SecretKeyMissing(
                    "Set POPACCOUNTS_SECRET_KEYS (or at least SECRET_KEY in debug/testing)."
                )
            log.warning("POPACCOUNTS_SECRET_KEYS not set: using a key derived from SECRET_KEY "
                        "(debug/testing only)")
            keys = [derive_dev_key(secret)]
        else:
            raise SecretKeyMissing(
                "POPACCOUNTS_SECRET_KEYS is required outside debug/testing: generate one with "
                "`flask popaccounts generate-key`, or python -c 'from cryptography.fernet "
                "import Fernet; print(Fernet.generate_key().decode())'"
            )
    return SecretBox(keys)


def _tune_sqlite(engine: Engine) -> None:
    """SQLite: enforce foreign keys, wait for locks instead of failing, WAL for readers."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
        cur.close()
