"""Exactly once under faults: SIGKILL of the fetching process, TCP resets mid-stream.

Each run fetches 150 small messages with delete-after-store into the real message store
(an Alembic-migrated database, SQLite and PostgreSQL, through
``services.fetching.fetch_account``: SqlLedger, SqlSink, filters, quota, health) from
the real Dovecot, and ends with the same checks: the stored set equals the delivered
set byte for byte, no UIDL stored twice, nothing truncated, nothing left on the server,
every ledger row marked gone.

The kill test kills the worker (tests/support/fetch_worker.py) 45 times, at points
chosen from what it reports rather than after guessed times: every other run holds
still at a window of a session (connected, logged in, listed, a message staged, a
commit, DELEs accepted but no QUIT, QUIT answered but the ledger not yet told, the
ledger told) and dies exactly there; the others are killed as soon as they report a
step and die a moment later, wherever they got to. The reset test goes on until 45
sessions have been cut at a random byte offset; it measures the message bytes
downloaded in all (complete and cut off) against the mailbox's: a cut costs at most the
message in flight, since the complete ones before it are committed (issue 11, item 26).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import random
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from flask import Flask

from flask_popaccounts.engine import ConnectionFailed
from flask_popaccounts.engine.errors import (
    ConnectionTimeout,
    MailboxInUse,
    PopAccountsError,
    ProtocolError,
)
from flask_popaccounts.engine.pop3wire import Wire
from flask_popaccounts.services import fetching, mailproblems
from flask_popaccounts.storage.models import Account
from tests.support import realstore
from tests.support.dovecot import Dovecot
from tests.support.dovecot_sessions import settle
from tests.support.faultproxy import FaultProxy
from tests.support.fetch_worker import ForkServer
from tests.support.mail import make_message

ROOT = Path(__file__).resolve().parents[2]
N_MESSAGES = 150


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database for the real store: a SQLite file, or one on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres").create_database())


@pytest.fixture
def control() -> Iterator[list[Flask]]:
    """Apps the test opens on the store (disposed after)."""
    apps: list[Flask] = []
    yield apps
    for app in apps:
        realstore.dispose(app)


def _check_exactly_once(dovecot: Dovecot, user: str, app: Flask, account_id: int,
                        originals: list[bytes]) -> None:
    rows = realstore.rows(app, account_id)
    uidls = collections.Counter(r.uidl for r in rows)
    dupes = {u: c for u, c in uidls.items() if c > 1}
    assert not dupes, f"{len(dupes)} UIDLs stored more than once"
    assert realstore.ledger_size(app, account_id) == len(rows), "ledger and messages differ"
    stored = [r.raw for r in rows]
    original_set = set(originals)
    truncated = [s for s in stored if s not in original_set]
    assert not truncated, f"{len(truncated)} stored messages differ from every original"
    assert sorted(stored) == sorted(originals), (
        f"stored {len(stored)} of {len(originals)}; lost {len(original_set - set(stored))}"
    )
    left = dovecot.server_messages(user)
    assert left == [], f"{len(left)} messages stranded on the server"
    assert all(r.on_server is False for r in rows), "ledger still thinks some are on the server"


#: Where a paused worker is killed: every window of a session (see fetch_worker.py).
#: ``listed`` and ``connected`` twice: also at the second session of a run, after a
#: whole session (stored, deleted, quit, marked gone) went through.
WINDOWS = [("connected", 1), ("logged-in", 1), ("listed", 1), ("stored", 0),
           ("committed", 0), ("deleted", 1), ("quit", 1), ("marked-gone", 1),
           ("connected", 2), ("listed", 2)]
#: Lines on which a running worker is killed at once: it dies a moment later, wherever
#: it has got to (in the TCP or TLS handshake, mid-RETR, mid-commit, in the DELE round).
TRIGGERS = ["connecting", "connected", "stored", "committed", "deleting", "quitting"]
#: Phases that only come while mail is left to fetch.
NEED_MAIL = {"stored", "committed", "deleting", "deleted", "marked-gone"}
N_KILLS = 45
N_CUTS = 45


@pytest.mark.slow
def test_sigkill_at_random_points_stores_each_message_exactly_once(
    dovecot: Dovecot, new_user: tuple[str, str], tmp_path: Path, store_url: str,
    control: list[Flask],
) -> None:
    user, password = new_user
    rng = random.Random(20261127)
    originals = [make_message(i, body_size=rng.randint(50, 1500), rng=rng)
                 for i in range(N_MESSAGES)]
    dovecot.deliver_many(user, originals)
    account_id = realstore.prepare(store_url, dovecot.pop3s_port, dovecot.ca_file, user,
                                   password)
    app = realstore.app_for(store_url, dovecot.pop3s_port, dovecot.ca_file)
    control.append(app)
    args = [store_url, "127.0.0.1", str(dovecot.pop3s_port), dovecot.ca_file, user, password]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    # Alternate: a worker told to hold still at a window (the kill lands exactly there),
    # then a running worker killed as soon as it reports a trigger (the kill lands a
    # moment later, wherever it has got to). The windows come in shuffled rounds, so
    # each is hit at least twice in 45 kills.
    windows: list[tuple[str, int]] = []
    for _ in range(N_KILLS // len(WINDOWS) + 1):
        windows += rng.sample(WINDOWS, len(WINDOWS))
    kills = kicked = 0
    landed: collections.Counter[str] = collections.Counter()  # where each kill found it
    missed: list[str] = []
    attempts = 0
    with open(tmp_path / "worker.err", "wb") as err, ForkServer(ROOT, env, err) as workers:
        while kills < N_KILLS and attempts < 2 * N_KILLS:
            attempts += 1
            kicked += settle(dovecot, user)
            # Size the sessions so the 300 messages last for all the kills: a run may
            # consume, on average, what is left divided by the kills still to come.
            left = N_MESSAGES - realstore.stored_count(app)
            share = max(1, left // (N_KILLS - kills))
            per_session = rng.randint(1, max(1, min(20, 3 * share)))
            commit_every = rng.choice([1, 3, 8, 20])
            paused = attempts % 2 == 1
            phase, n = windows.pop(0) if paused else (rng.choice(TRIGGERS), 1)
            if not paused and phase in ("stored", "committed"):
                n = 0  # after a random one of them
            if phase in NEED_MAIL and left == 0:
                phase, n = "listed", 1  # an empty mailbox: kill where there still is a step
            if n == 0:
                commits = -(-per_session // commit_every)
                n = rng.randint(1, per_session if phase == "stored" else commits)
            stop = f"{phase}:{n}" if paused else "-"
            workers.start([*args, str(commit_every), str(per_session), stop])
            # a paused worker says STOP; a running one is killed at the trigger's n-th line
            want, times = ("STOP", 1) if paused else (phase, n)
            seen: collections.Counter[str] = collections.Counter()

            def reached(line: str, want: str = want, times: int = times,
                        seen: collections.Counter[str] = seen) -> bool:
                word = line.split(" ", 1)[0]
                seen[word] += 1
                return word in ("DONE", "ERR") or (word == want and seen[word] >= times)

            line = workers.watch(reached, 60, f"the worker to reach {phase} #{n}")
            if line is not None and line.split(" ", 1)[0] == want:
                workers.kill()
            rc, printed = workers.end()
            if rc == -signal.SIGKILL:
                kills += 1
                last = [ln for ln in printed if not ln.startswith("STOP")][-1]
                landed[f"{'at' if paused else 'after'} {last.split(' ', 1)[0]}"] += 1
            else:
                missed.append(f"{stop if paused else phase}: rc {rc}, {printed[-1:]}")

        # Now let it finish, retrying through transient errors like a scheduler would.
        left = N_MESSAGES - realstore.stored_count(app)
        for _ in range(5):
            workers.start(args)
            rc, printed = workers.end(120)
            if rc == 0:
                break
    assert rc == 0, (printed[-5:], (tmp_path / "worker.err").read_text()[-2000:])
    print(f"kill test ({store_url.split(':')[0]}): {kills} kills in {attempts} runs, "
          f"{left} messages left for the last run; landed {dict(sorted(landed.items()))}; "
          f"missed {missed}; {kicked} lingering sessions kicked")
    assert kills == N_KILLS, f"only {kills} kills landed; missed: {missed}"
    # Every window of a session was really hit (a paused worker dies exactly there).
    assert {f"at {w}" for w, _ in WINDOWS} <= set(landed), landed

    _check_exactly_once(dovecot, user, app, account_id, originals)


class _Downloaded:
    """Counts the message bytes read off the wire, complete or cut off (this process)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.octets = 0
        real = Wire.read_body_into

        def counting(wire: Wire, out: IO[bytes], limit: int | None = None) -> int:
            try:
                return real(wire, out, limit)
            finally:
                self.octets += out.tell()

        monkeypatch.setattr(Wire, "read_body_into", counting)


@pytest.mark.slow
def test_connection_reset_at_random_offsets_never_duplicates_or_truncates(
    dovecot: Dovecot, new_user: tuple[str, str], store_url: str, control: list[Flask],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user, password = new_user
    rng = random.Random(4242)
    originals = [make_message(i, body_size=rng.randint(50, 3000), rng=rng)
                 for i in range(N_MESSAGES)]
    dovecot.deliver_many(user, originals)
    mailbox_bytes = sum(len(m) for m in originals)
    downloaded = _Downloaded(monkeypatch)
    commit_every = [64]
    real_policy = fetching.retrieval_policy_for

    def policy(app: Flask, account: Account) -> Any:  # the group size varies per session
        return dataclasses.replace(real_policy(app, account), commit_every=commit_every[0])

    monkeypatch.setattr(fetching, "retrieval_policy_for", policy)
    with FaultProxy("127.0.0.1", dovecot.pop3s_port) as proxy:
        account_id = realstore.prepare(store_url, proxy.port, dovecot.ca_file, user, password)
        app = realstore.app_for(store_url, proxy.port, dovecot.ca_file)
        control.append(app)
        failures: collections.Counter[str] = collections.Counter()
        sessions = kicked = 0
        with app.app_context():
            while proxy.cuts_done < N_CUTS and sessions < 2 * N_CUTS:
                sessions += 1
                kicked += settle(dovecot, user)
                stored = {r.raw for r in realstore.rows(app, account_id)}
                todo = [len(m) for m in originals if m not in stored]
                on_server = len(dovecot.server_messages(user))
                # At most k messages this session, k sized so that the messages last
                # for all the cuts (an empty mailbox would leave only handshakes to cut).
                share = len(todo) // (N_CUTS - proxy.cuts_done)
                cap = max(1, min(40, 6 * share))
                k = rng.randint(min(10, cap), cap)
                # Aim the cut inside the coming session: its messages, plus TLS, UIDL/LIST
                # listings and the DELE round, all estimated (a cut past the end of the
                # session does not land; the loop goes on until 45 have).
                avg = sum(todo) // len(todo) if todo else 0
                session_bytes = min(k, len(todo)) * avg + 3000 + 60 * on_server
                proxy.cut_next(rng.randint(0, session_bytes))
                app.config["POPACCOUNTS_MAX_MESSAGES_PER_SESSION"] = k
                commit_every[0] = rng.choice([1, 4, 16, 64])
                try:
                    fetching.fetch_account(app, account_id, max_sessions=1)
                except (ConnectionFailed, ProtocolError, MailboxInUse) as exc:
                    failures[exc.code] += 1
                    # A cut resets the client at once; a wait for the mailbox (timeout or
                    # [IN-USE]) means an earlier session lingers at the server: say so now
                    # rather than after many 10 s waits.
                    stuck = failures["timeout"] + failures["in_use"]
                    assert stuck <= 3, (f"{stuck} sessions waited for the mailbox after "
                                        f"{proxy.cuts_done} cuts; proxy has {proxy.live} "
                                        f"live connections\n{dovecot.log()[-3000:]}")
                except PopAccountsError as exc:  # anything else is a bug: show it
                    raise AssertionError(f"unexpected {exc.code}: {exc.detail}") from exc
            left = len(originals) - realstore.stored_count(app)
            set_aside = _retry_set_aside(app, account_id)
            app.config["POPACCOUNTS_MAX_MESSAGES_PER_SESSION"] = 1000
            for _ in range(3):
                proxy.cut_next(None)
                try:
                    fetching.fetch_account(app, account_id)
                    break
                except (ConnectionTimeout, MailboxInUse):
                    continue
        cuts = proxy.cuts_done
    ratio = downloaded.octets / mailbox_bytes
    print(f"reset test ({store_url.split(':')[0]}): {cuts} cuts in {sessions} sessions, "
          f"{left} messages left for the last session, {set_aside} set aside and retried; "
          f"failures {dict(failures)}; {kicked} lingering sessions kicked; message bytes "
          f"downloaded {downloaded.octets} / mailbox {mailbox_bytes} = {ratio:.3f}")
    assert cuts >= N_CUTS, f"only {cuts} cuts landed in {sessions} sessions"
    _check_exactly_once(dovecot, user, app, account_id, originals)
    # A cut costs at most the message in flight: the complete ones are kept.
    assert downloaded.octets <= mailbox_bytes + cuts * max(map(len, originals)), ratio


def _retry_set_aside(app: Flask, account_id: int) -> int:
    """Press Retry on every message set aside (cut three times while in flight)."""
    from flask_popaccounts import get_state

    with get_state(app).session_factory() as session:
        account = session.get(Account, account_id)
        assert account is not None
        uidls = [r.uidl for r in mailproblems.problems(session, account_id)
                 if r.kind == "set_aside"]
        for uidl in uidls:
            assert mailproblems.retry(session, account, uidl, now=get_state(app).clock())
    return len(uidls)
