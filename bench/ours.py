"""Benchmark worker for our engine; runs in its own process (one job per process).

``python -m bench.ours '<json job>'`` prints one JSON line with the result. Jobs:

* ``fetch``: a first full fetch into a fresh store (``db`` must not exist yet);
* ``memory``: same, but reports peak RSS above the baseline taken just before the
  fetch (after imports, schema and account setup);
* ``poll``: ``repeat`` fetch sessions against an existing store, timing each.

The store is the extension's built-in one (``flask_popaccounts.storage.mailstore``: SqlLedger +
SqlSink on SQLAlchemy over a SQLite file, tuned as the extension tunes SQLite); there is
no stand-in (an earlier one measured a sqlite3 copy whenever an import moved).

With ``"lmtp": {"host", "port", "recipient"}`` in the job, the messages go instead where
a host platform's would: a Flask app with ``PopAccounts(app, db=engine,
hooks=Hooks(delivery=Lmtp(...)))`` (``storage.deliveries.lmtp``, plaintext LMTP over
loopback), the sink the one the fetching service builds from that hook
(``services.delivering.external_sink``: intents, ledger, records in the same SQLite
file). The parent checks what arrived in the LMTP server's Maildir.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask_popaccounts.engine import sync
from flask_popaccounts.engine.types import (
    AuthMethod,
    Credentials,
    NetPolicy,
    RetrievalPolicy,
    Security,
    ServerSpec,
)


def _proc_status(field: str) -> int:
    """A ``VmRSS``/``VmHWM`` figure of this process, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False when not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# -- the real store -----------------------------------------------------------------------


class RealStore:
    label = "flask_popaccounts.storage.mailstore (SqlLedger+SqlSink, SQLAlchemy, SQLite WAL)"

    def __init__(self, db: str) -> None:
        from sqlalchemy import create_engine, event
        from sqlalchemy.orm import Session

        from flask_popaccounts.services import filtering
        from flask_popaccounts.storage import mailbox
        from flask_popaccounts.storage import mailstore as store
        from flask_popaccounts.storage.models import Account, Base

        self._store = store
        self._mailbox = mailbox
        self._filtering = filtering
        self.engine = create_engine(f"sqlite:///{db}")
        try:  # exactly what the extension does to its SQLite engines
            from flask_popaccounts.runtime import tune_sqlite as _tune_sqlite

            _tune_sqlite(self.engine)
        except ImportError:  # pragma: no cover - same pragmas by hand

            @event.listens_for(self.engine, "connect")
            def _on_connect(conn: Any, _rec: Any) -> None:
                for p in ("foreign_keys=ON", "busy_timeout=30000", "journal_mode=WAL",
                          "synchronous=FULL"):
                    conn.execute(f"PRAGMA {p}")

        Base.metadata.create_all(self.engine)
        self.Session = Session
        with Session(self.engine) as s:
            acc = s.query(Account).filter_by(owner_id="bench").one_or_none()
            if acc is None:
                acc = Account(
                    owner_id="bench", email="bench@example.net", name="Bench",
                    send_from="bench@example.net", pop_host="127.0.0.1", pop_port=995,
                    pop_security=Security.SSL, pop_username="bench",
                )
                s.add(acc)
                s.flush()
                mailbox.ensure_default_folders(s, acc)
                s.commit()
            self.account_id = acc.id
            self.inbox_id = mailbox.folder_id_for(s, acc.id)

    def new_session(self) -> Any:
        return self.Session(self.engine)

    def open(self) -> tuple[Any, Any, Any]:
        session = self.new_session()
        ledger = self._store.SqlLedger(session, self.account_id)
        # the account's filters, as the real fetch asks them (none here: one query)
        sink = self._store.SqlSink(session, self.account_id, self.inbox_id,
                                   classifier=self._filtering.classifier_for(session,
                                                                             self.account_id))
        return session, ledger, sink

    def count(self) -> tuple[int, int]:
        with self.Session(self.engine) as s:
            n = self._mailbox.count_messages(s, self.account_id)
            from sqlalchemy import func, select

            from flask_popaccounts.storage.models import Message

            b = s.execute(
                select(func.coalesce(func.sum(Message.size), 0)).where(
                    Message.account_id == self.account_id
                )
            ).scalar_one()
            return int(n), int(b)


class LmtpStore(RealStore):
    """The ledger in the built-in store's SQLite file, the mail through the host's
    ``delivery`` hook: the extension's ``Lmtp`` delivery into the LMTP server given."""

    def __init__(self, db: str, lmtp: dict[str, Any]) -> None:
        super().__init__(db)
        from cryptography.fernet import Fernet
        from flask import Flask

        from flask_popaccounts import PopAccounts
        from flask_popaccounts.hooks import Hooks
        from flask_popaccounts.runtime import get_state
        from flask_popaccounts.services import delivering
        from flask_popaccounts.storage.deliveries.lmtp import Lmtp

        address = lmtp["recipient"]
        delivery = Lmtp(lmtp["host"], lmtp["port"], security=Security.PLAIN,
                        recipient=lambda owner, account: address)
        self.label = (f"the delivery hook: storage.deliveries.lmtp.Lmtp to "
                      f"{lmtp['host']}:{lmtp['port']} (plaintext LMTP, loopback), the "
                      f"ledger and intents in SQLite WAL")
        app = Flask("popbench")
        app.config.update(POPACCOUNTS_SECRET_KEYS=Fernet.generate_key().decode(),
                          POPACCOUNTS_ALLOW_PRIVATE_HOSTS=True)
        PopAccounts(app, db=self.engine, hooks=Hooks(delivery=delivery))
        self.app = app
        self._factory = get_state(app).session_factory  # as the fetching service's
        self._delivering = delivering

    def new_session(self) -> Any:
        return self._factory()

    def open(self) -> tuple[Any, Any, Any]:
        session = self.new_session()
        ledger = self._store.SqlLedger(session, self.account_id)
        sink = self._delivering.external_sink(
            self.app, session, self.account_id, owner_id="bench", username="bench",
            host="127.0.0.1", on_commit=None)
        assert sink is not None
        return session, ledger, sink

    def count(self) -> tuple[int, int]:
        """Ledger rows, and -1 bytes (what arrived is checked in the LMTP server's
        Maildir by the parent)."""
        from sqlalchemy import func, select

        from flask_popaccounts.storage.models import UidlEntry

        with self.new_session() as s:
            n = s.execute(select(func.count()).select_from(UidlEntry).where(
                UidlEntry.account_id == self.account_id)).scalar_one()
        return int(n), -1


def make_store(db: str, lmtp: dict[str, Any] | None = None) -> RealStore:
    """The extension's own store (or the LMTP hook): a benchmark of anything else would
    measure nothing."""
    return RealStore(db) if lmtp is None else LmtpStore(db, lmtp)


# -- jobs ---------------------------------------------------------------------------------


def _one_fetch(job: dict[str, Any], store: RealStore) -> tuple[float, Any]:
    server = ServerSpec(
        host=job["host"], port=job["port"], security=Security.SSL, username=job["user"]
    )
    creds = Credentials(AuthMethod.PASSWORD, job["password"])
    net = NetPolicy(
        allow_private=True, allowed_ports=frozenset({job["port"]}), ca_file=job["ca_file"]
    )
    policy = RetrievalPolicy(
        max_message_size=job.get("max_message_size", 100 * 1024 * 1024),
        max_messages_per_session=job.get("max_messages_per_session", 1000),
    )
    t0 = time.perf_counter()
    c0 = time.process_time()
    stored = sessions = 0
    while True:  # as the fetching service does: sessions until nothing is pending
        session, ledger, sink = store.open()
        try:
            timed = sink if isinstance(store, LmtpStore) else _Timed(sink)
            report = sync.fetch(server, creds, policy, ledger, timed, net=net)
        finally:
            if isinstance(store, LmtpStore):
                sink.close()  # the LMTP session's QUIT, as the fetching service does
            session.close()
        sessions += 1
        stored += report.stored
        if not report.more_pending:
            break
    report.stored = stored
    STAGES["cpu"] = time.process_time() - c0  # this process's CPU time (user + system)
    STAGES["sessions"] = sessions
    return time.perf_counter() - t0, report


#: Seconds spent in each stage of the fetches so far (a cheap breakdown, no profiler);
#: ``cpu`` is the process CPU time of the last fetch, not a stage.
STAGES: dict[str, float] = {}


def _timed(name: str, fn: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            STAGES[name] = STAGES.get(name, 0.0) + time.perf_counter() - t

    return wrapper


class _Timed:
    """Wraps a sink to time ``add`` (stage) and ``commit`` (durability) separately."""

    def __init__(self, sink: Any) -> None:
        self.add = _timed("store_add", sink.add)
        self.commit = _timed("store_commit", sink.commit)
        self.rollback = sink.rollback


def _instrument_lmtp() -> None:
    """The delivery's stages: LMTP transactions, and the commits of intents and ledger
    rows (one per message: the intent is durable before the server sees a byte)."""
    from flask_popaccounts.services.delivering import DeliverySink
    from flask_popaccounts.storage.deliveries.lmtp import LmtpSession

    setattr(LmtpSession, "deliver", _timed("lmtp_deliver", LmtpSession.deliver))  # noqa: B010
    setattr(DeliverySink, "_write", _timed("ledger_commit", DeliverySink._write))  # noqa: B010


# The engine's header parsing, timed where sync.fetch looks it up.
sync.parse_meta = _timed("parse_meta", sync.parse_meta)  # type: ignore[attr-defined]
sync.read_header_section = _timed(  # type: ignore[attr-defined]
    "read_header_section", sync.read_header_section
)


def run(job: dict[str, Any]) -> dict[str, Any]:
    kind = job["kind"]
    if kind in ("fetch", "memory") and os.path.exists(job["db"]):
        raise SystemExit(f"{job['db']} exists: a first fetch needs a fresh store")
    store = make_store(job["db"], job.get("lmtp"))
    if job.get("lmtp"):
        _instrument_lmtp()
    out: dict[str, Any] = {"store": store.label}
    if kind == "fetch":
        baseline = _proc_status("VmRSS")
        secs, report = _one_fetch(job, store)
        n, b = store.count()
        # peak_rss: the whole process's high-water mark (interpreter, imports, fetch)
        out.update(seconds=secs, stored=report.stored, counted=n, bytes=b,
                   more_pending=report.more_pending, stages=dict(STAGES),
                   baseline_rss=baseline, peak_rss=_proc_status("VmHWM"))
    elif kind == "memory":
        baseline = _proc_status("VmRSS")
        exact = _reset_peak_rss()
        secs, report = _one_fetch(job, store)
        peak = _proc_status("VmHWM")
        n, b = store.count()
        out.update(seconds=secs, stored=report.stored, counted=n, bytes=b,
                   baseline_rss=baseline, peak_rss=peak, peak_above_baseline=peak - baseline,
                   peak_reset=exact)
    elif kind == "poll":
        times = []
        for _ in range(job.get("repeat", 3)):
            secs, report = _one_fetch(job, store)
            if report.stored:
                raise SystemExit(f"poll stored {report.stored} messages: ledger was not full")
            times.append(secs)
        n, _b = store.count()
        out.update(times=times, seconds=min(times), server_count=report.server_count, counted=n)
    else:
        raise SystemExit(f"unknown job kind {kind!r}")
    return out


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(argv[0])
    if job.get("profile"):
        import cProfile
        import pstats

        prof = cProfile.Profile()
        result = prof.runcall(run, job)
        prof.dump_stats(job["profile"])
        stats = pstats.Stats(job["profile"])
        stats.sort_stats("cumulative").print_stats(35)
        stats.sort_stats("tottime").print_stats(25)
    else:
        result = run(job)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
