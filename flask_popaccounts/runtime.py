"""The per-app state every layer may use: a leaf, so nothing below it reaches up.

:class:`PopAccountsState` lives in ``app.extensions["popaccounts"]``: the database
engine and session factory, the secret box, the clock and the host's hooks.
:func:`get_state` finds it, :func:`db_session` gives the request's session (closed at
teardown by :func:`close_request_session`). Services, pages and jobs import this module,
never the extension object's module (which imports the pages and jobs to register them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app, g
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from .engine.clock import Clock, utcnow

if TYPE_CHECKING:
    from .storage.crypto import SecretBox


class FetchRegistry:
    """This process's fetches on one database: their progress, the "check now" threads.

    Kept per database (account ids are unique there), not per module: two apps of one
    process on different databases never see each other's ids, two on the same one
    share what runs.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: account id -> the running (or last) fetch's progress, as services.progress keeps it
        self.progress: dict[int, dict[str, Any]] = {}
        #: account id -> the background thread of a "check now"
        self.threads: dict[int, threading.Thread] = {}


_REGISTRIES: dict[str, FetchRegistry] = {}
_REGISTRIES_LOCK = threading.Lock()


class PopAccountsState:
    """Everything the extension keeps for one app."""

    def __init__(self, ext: Any, engine_getter: Callable[[], Engine], secrets: SecretBox, *,
                 clock: Clock | None = None) -> None:
        self.ext = ext
        self._engine_getter = engine_getter
        self._engine: Engine | None = None
        self._session_factory: sessionmaker[Session] | None = None
        self._lock = threading.Lock()
        self.secrets = secrets
        #: the app's clock (tests inject one to move time on)
        self.clock: Clock = clock or utcnow
        self.scheduler: Any = None  # set by jobs.scheduler when it runs

    @property
    def quota(self) -> Callable[[str], int | None] | None:
        """The host's quota hook: owner id -> bytes (None: unlimited), or None."""
        hook: Callable[[str], int | None] | None = getattr(self.ext, "quota", None)
        return hook

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    engine = self._engine_getter()
                    tune_sqlite(engine)
                    self._engine = engine
        return self._engine

    @property
    def fetches(self) -> FetchRegistry:
        """This process's fetches on this app's database."""
        url = self.engine.url
        key = url.render_as_string(hide_password=True)
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            key = f"memory:{id(self.engine)}"  # each in-memory engine is its own database
        with _REGISTRIES_LOCK:
            return _REGISTRIES.setdefault(key, FetchRegistry())

    @property
    def session_factory(self) -> sessionmaker[Session]:
        """New independent sessions, for background work (scheduler, CLI)."""
        if self._session_factory is None:
            self._session_factory = sessionmaker(bind=self.engine, expire_on_commit=False)
        return self._session_factory


def get_state(app: Flask | None = None) -> PopAccountsState:
    """The extension's state for ``app`` (default: the current app)."""
    app = app or current_app
    try:
        state: PopAccountsState = app.extensions["popaccounts"]
        return state
    except KeyError:
        raise RuntimeError("PopAccounts is not registered on this app") from None


def this_app() -> Flask:
    """The real current app object (for work that outlives the request: threads)."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return app


def db_session() -> Session:
    """The session for this request/app context, closed at teardown."""
    sess: Session | None = g.get("_popaccounts_session")
    if sess is None:
        sess = get_state().session_factory()
        g._popaccounts_session = sess
    return sess


def close_request_session(exc: BaseException | None) -> None:
    """Teardown: roll back on error, close the request's session."""
    sess: Session | None = g.pop("_popaccounts_session", None)
    if sess is not None:
        if exc is not None:
            sess.rollback()
        sess.close()


def tune_sqlite(engine: Engine) -> None:
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
