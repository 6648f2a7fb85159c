"""Fetches an account into the real store until nothing is pending; the kill test's victim.

    python -m tests.support.fetch_worker URL HOST PORT CA USER PASSWORD \
        [COMMIT_EVERY [PER_SESSION [STOP]]]

URL is a database :func:`tests.support.realstore.prepare` migrated and gave one account
(SQLite or PostgreSQL). With ``POPACCOUNTS_TEST_DELIVERY`` set (:mod:`.deliveryspec`),
the host delivers to Maildir or LMTP instead of the built-in store. Each session is one
``services.fetching.fetch_account`` (the SQL ledger and sink, filters, quota, health),
PER_SESSION messages at most
(``POPACCOUNTS_MAX_MESSAGES_PER_SESSION``), committed every COMMIT_EVERY. The account
deletes from the server after storing. Reports every phase of every session on stdout,
one line each, flushed, so that the test can kill it at a point it chose from what the
worker says rather than after a guessed time:

    connecting             about to open the TCP connection
    connected              TLS up, greeting and CAPA read; not logged in
    logged-in              authenticated; nothing listed yet
    listed N               UIDL read, ledger consulted: N messages on the server
    stored D/T             message D of this session's T staged (committed per COMMIT_EVERY)
    delivered              a message handed to the host's delivery (Maildir, LMTP): not
                           yet in the ledger
    already-there          (Maildir) the message's file was there: a repeat, a no-op
    read-back R            (LMTP) an open intent looked up over IMAP: "found", "missing"
    committed              a group of staged messages committed to the store (SqlSink),
                           or ledger rows of delivered ones (the delivery's sink)
    deleting N             about to send N DELEs
    deleted N              the server accepted N DELEs (not final before QUIT)
    quitting               about to send QUIT
    quit                   QUIT answered +OK: the deletions are real on the server
    marked-gone N          the ledger (SqlLedger) now knows N messages are gone
    session MORE           a session ended; MORE is 1 when another one follows
    DONE                   nothing left; exit 0
    ERR CODE DETAIL        a named engine error; exit 3

STOP is ``PHASE:N`` (or ``-``): on reaching PHASE for the N-th time in its life the
worker prints ``STOP PHASE N`` and then waits, doing nothing, to be killed there.

A test that starts many workers uses :class:`ForkServer`: one process
(``python -m tests.support.fetch_worker --serve``) imports everything once and forks
one worker per run, so each run costs a fork rather than a Python start. Each forked
worker first prints ``PID N``; when it has ended the server prints ``EXIT N RC`` (RC
as ``subprocess`` has it: negative for a signal).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import IO, Any

from flask_popaccounts.engine import PopAccountsError, Progress
from flask_popaccounts.engine.pop3 import POP3Client
from flask_popaccounts.services import fetching
from flask_popaccounts.services.delivering import DeliverySink
from flask_popaccounts.storage.deliveries.lmtp import ImapReadBack, LmtpSession
from flask_popaccounts.storage.deliveries.maildir import MaildirSession
from flask_popaccounts.storage.mailstore import SqlLedger, SqlSink
from tests.support import deliveryspec, realstore
from tests.support.waiting import LineReader


class Reporter:
    """Prints phase lines; holds still at the STOP point."""

    def __init__(self, stop: str) -> None:
        phase, _, n = stop.partition(":")
        self.stop = (phase, int(n)) if phase and phase != "-" else None
        self.seen: collections.Counter[str] = collections.Counter()

    def __call__(self, phase: str, *info: object) -> None:
        self.seen[phase] += 1
        sys.stdout.write(" ".join([phase, *map(str, info)]) + "\n")
        if self.stop == (phase, self.seen[phase]):
            sys.stdout.write(f"STOP {phase} {self.seen[phase]}\n")
            sys.stdout.flush()
            while True:
                signal.pause()  # the test kills us here
        sys.stdout.flush()


def instrument(report: Reporter) -> None:
    """Report around the POP3 client's steps (this process only)."""
    real_open = POP3Client.open.__func__  # type: ignore[attr-defined]
    real_login, real_uidl = POP3Client.login, POP3Client.uidl
    real_dele, real_quit = POP3Client.dele, POP3Client.quit

    def open_(cls: type[POP3Client], *args: Any, **kw: Any) -> POP3Client:
        report("connecting")
        client: POP3Client = real_open(cls, *args, **kw)
        report("connected")
        return client

    def login(self: POP3Client, *args: Any, **kw: Any) -> frozenset[str]:
        caps = real_login(self, *args, **kw)
        report("logged-in")
        return caps

    def uidl(self: POP3Client) -> dict[int, str]:
        listing = real_uidl(self)
        report("listed", len(listing))
        return listing

    def dele(self: POP3Client, msgnums: Any) -> list[int]:
        nums = list(msgnums)
        report("deleting", len(nums))
        accepted = real_dele(self, nums)
        report("deleted", len(accepted))
        return accepted

    def quit_(self: POP3Client) -> None:
        report("quitting")
        real_quit(self)
        report("quit")

    POP3Client.open = classmethod(open_)  # type: ignore[method-assign,assignment]
    POP3Client.login = login  # type: ignore[method-assign]
    POP3Client.uidl = uidl  # type: ignore[method-assign]
    POP3Client.dele = dele  # type: ignore[method-assign]
    POP3Client.quit = quit_  # type: ignore[method-assign]


def instrument_store(report: Reporter) -> None:
    """Report the real store's commits and the ledger's mark_gone (this process only)."""
    real_commit, real_gone = SqlSink.commit, SqlLedger.mark_gone

    def commit(self: SqlSink) -> None:
        pending = bool(self._staged_ids or self._pending)
        real_commit(self)
        if pending:
            report("committed")

    def mark_gone(self: SqlLedger, uidls: Collection[str]) -> None:
        real_gone(self, uidls)
        report("marked-gone", len(uidls))

    SqlSink.commit = commit  # type: ignore[method-assign]
    SqlLedger.mark_gone = mark_gone  # type: ignore[method-assign]
    instrument_deliveries(report)


def instrument_deliveries(report: Reporter) -> None:
    """Report the host deliveries' steps: each delivery, each write of ledger rows."""
    real_write = DeliverySink._write

    def write(self: DeliverySink) -> None:
        rows = bool(self._ledger)
        real_write(self)
        if rows:
            report("committed")

    DeliverySink._write = write  # type: ignore[method-assign]
    for cls in (MaildirSession, LmtpSession):
        real = cls.deliver

        def deliver(self: Any, item: Any, real: Any = real) -> None:
            if isinstance(self, MaildirSession) and self.find(item):
                report("already-there")  # a repeat: the file is there, nothing written
            real(self, item)
            report("delivered")

        cls.deliver = deliver  # type: ignore[method-assign]
    real_back = ImapReadBack.__call__

    def read_back(self: ImapReadBack, *args: Any) -> bool:
        found = real_back(self, *args)
        report("read-back", "found" if found else "missing")
        return found

    ImapReadBack.__call__ = read_back  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    url, _host, port, ca, _user, _password = argv[:6]
    commit_every = int(argv[6]) if len(argv) > 6 else 8
    per_session = int(argv[7]) if len(argv) > 7 else 60
    report = Reporter(argv[8] if len(argv) > 8 else "-")
    instrument(report)
    instrument_store(report)
    realstore.with_commit_every(fetching, commit_every)
    app = realstore.app_for(url, int(port), ca, hooks=deliveryspec.hooks_from_env(),
                            POPACCOUNTS_MAX_MESSAGES_PER_SESSION=per_session)
    account_id = realstore.account_id_of(app)

    def progress(p: Progress) -> None:
        report("stored", f"{p.done}/{p.total}")

    try:
        with app.app_context():
            while True:
                result = fetching.fetch_account(app, account_id, progress=progress,
                                                max_sessions=1)
                report("session", int(result.more_pending))
                if not result.more_pending:
                    break
    except PopAccountsError as exc:
        print(f"ERR {exc.code} {exc.detail}", flush=True)
        return 3
    print("DONE", flush=True)
    return 0


def serve() -> int:
    """The fork server: one worker per JSON argv line on stdin, one at a time."""
    print("SERVING", flush=True)
    for line in sys.stdin:
        argv = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the worker
            rc = 70
            try:
                print(f"PID {os.getpid()}", flush=True)
                rc = main(argv)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(rc)
        _, status = os.waitpid(pid, 0)
        print(f"EXIT {pid} {os.waitstatus_to_exitcode(status)}", flush=True)
    return 0


class ForkServer:
    """The test's side of ``--serve``: ``start(argv)``, ``watch(...)``, ``kill()``, ``end()``."""

    def __init__(self, root: Path, env: dict[str, str], stderr: IO[bytes]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.fetch_worker", "--serve"], cwd=root,
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        assert self.proc.stdout is not None
        self.lines = LineReader(self.proc.stdout)
        self.lines.expect(lambda line: line == "SERVING", 60, "the fork server to start")
        self.pid = 0
        self._first = 0
        self._exit: str | None = None

    def start(self, argv: Sequence[str]) -> int:
        """Fork a worker with these arguments (DB HOST ...); returns its pid."""
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(list(argv)) + "\n").encode())
        self.proc.stdin.flush()
        line = self.lines.expect(lambda ln: ln.startswith("PID "), 60, "a forked worker")
        assert line is not None, "the fork server ended"
        self.pid = int(line.split()[1])
        self._first = self.lines.lines.index(line, self._first) + 1
        self._exit = None
        return self.pid

    def watch(self, match: Callable[[str], bool], timeout: float, what: str) -> str | None:
        """The worker's next line that ``match`` accepts; None once the worker ended."""
        if self._exit is not None:
            return None
        tag = f"EXIT {self.pid} "
        line = self.lines.expect(lambda ln: ln.startswith(tag) or match(ln), timeout, what)
        assert line is not None, "the fork server ended"
        if line.startswith(tag):
            self._exit = line
            return None
        return line

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:  # it had ended and was reaped already
            pass

    def end(self, timeout: float = 60) -> tuple[int, list[str]]:
        """Wait for the worker's end: its return code and the lines it printed."""
        if self._exit is None:
            self.watch(lambda ln: False, timeout, f"worker {self.pid} to end")
        assert self._exit is not None
        printed = self.lines.lines[self._first:]
        printed = printed[: printed.index(self._exit)]
        return int(self._exit.split()[2]), printed

    def close(self) -> None:
        if self.pid and self._exit is None:
            self.kill()  # a worker still running or paused (a test failed mid-run)
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # the server ends after its current worker
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(serve() if sys.argv[1:] == ["--serve"] else main(sys.argv[1:]))
