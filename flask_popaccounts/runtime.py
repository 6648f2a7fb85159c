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
    from .hooks import Hooks
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
                 clock: Clock | None = None, sqlite_busy_timeout: float = 30.0) -> None:
        self.ext = ext
        self._engine_getter = engine_getter
        self._engine: Engine | None = None
        self._session_factory: sessionmaker[Session] | None = None
        self._heartbeat_factory: sessionmaker[Session] | None = None
        self.sqlite_busy_timeout = sqlite_busy_timeout
        self._lock = threading.Lock()
        self.secrets = secrets
        #: the app's clock (tests inject one to move time on)
        self.clock: Clock = clock or utcnow
        self.scheduler: Any = None  # set by jobs.scheduler when it runs
        #: languages (set by i18n.setup): the gettext domain, the locales it has, and
        #: the host's time-zone hook (owner id -> IANA name)
        self.domain: Any = None
        self.locales: list[str] = []
        self.timezone_hook: Callable[[str], str | None] | None = None

    @property
    def quota(self) -> Callable[[str], int | None] | None:
        """The host's quota hook: owner id -> bytes (None: unlimited), or None."""
        hook: Callable[[str], int | None] | None = getattr(self.ext, "quota", None)
        return hook

    @property
    def hooks(self) -> Hooks | None:
        """The host's hook registry (:mod:`.hooks`; None: an extension object without one)."""
        hooks: Hooks | None = getattr(self.ext, "hooks", None)
        return hooks

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    engine = self._engine_getter()
                    tune_sqlite(engine, busy_timeout=self.sqlite_busy_timeout)
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


    @property
    def heartbeat_factory(self) -> sessionmaker[Session]:
        """Sessions for lease renewals, on a connection pool of their own.

        The heartbeat must renew even when every pooled connection is busy with a fetch
        (or the host's requests): waiting behind them for ``pool_timeout`` would let
        leases run out under load. A second pool with the same connect function (and
        the same connect hooks: ``Pool.recreate``) gives it its own connection. SQLite
        in memory has one connection for everything: its pool is shared.
        """
        if self._heartbeat_factory is None:
            with self._lock:
                if self._heartbeat_factory is None:
                    self._heartbeat_factory = sessionmaker(bind=_own_pool(self.engine),
                                                           expire_on_commit=False)
        return self._heartbeat_factory


def _own_pool(engine: Engine) -> Engine:
    """An Engine like ``engine`` on a fresh pool of its own (``engine`` where it cannot)."""
    from sqlalchemy.pool import QueuePool

    if not isinstance(engine.pool, QueuePool):  # in-memory SQLite: one shared connection
        return engine
    pool = engine.pool.recreate()
    return Engine(pool, engine.dialect, engine.url)


def pool_capacity(engine: Engine) -> int | None:
    """How many connections ``engine``'s pool gives out at once (None: no limit known)."""
    from sqlalchemy.pool import QueuePool

    pool = engine.pool
    if not isinstance(pool, QueuePool):
        return None
    overflow = int(getattr(pool, "_max_overflow", 0))
    return None if overflow < 0 else pool.size() + overflow


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


def tune_sqlite(engine: Engine, *, busy_timeout: float = 30.0) -> None:
    """SQLite: foreign keys enforced, locks waited for (``busy_timeout`` seconds), WAL.

    Applied to every connection the extension gets from the pool, also to those the
    host opened before the extension first touched the engine (they are already in the
    pool and never "connect" again): each pooled connection is tuned once, when it is
    first checked out after registration, and new ones when they connect.
    """
    if engine.dialect.name != "sqlite" or getattr(engine, "_popaccounts_tuned", False):
        return
    engine._popaccounts_tuned = True  # type: ignore[attr-defined]
    file_db = engine.url.database not in (None, "", ":memory:")
    millis = int(busy_timeout * 1000)

    def apply(dbapi_conn: Any, record: Any) -> None:
        if record.info.get("popaccounts_tuned"):
            return
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={millis}")
            if file_db:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
        finally:
            cur.close()
        record.info["popaccounts_tuned"] = True

    event.listen(engine, "connect", apply)
    event.listen(engine, "checkout", lambda conn, record, _proxy: apply(conn, record))
