"""Exactly once under faults: SIGKILL of the fetching process, TCP resets mid-stream.

Both runs fetch 300 small messages with delete-after-store into the durable sqlite
store, against the real Dovecot, and end with the same checks: the stored set equals
the delivered set byte for byte, no UIDL stored twice, nothing truncated, nothing left
on the server, every ledger row marked gone.

The kill test kills the worker (tests/support/fetch_worker.py) 45 times, at points
chosen from what it reports rather than after guessed times: every other run holds
still at a window of a session (connected, logged in, listed, a message staged, a
commit, DELEs accepted but no QUIT, QUIT answered but the ledger not yet told, the
ledger told) and dies exactly there; the others are killed as soon as they report a
step and die a moment later, wherever they got to. The reset test goes on until 45
sessions have been cut at a random byte offset.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import sqlite3
from pathlib import Path

import pytest

from flask_popaccounts.engine import (
    AuthMethod,
    ConnectionFailed,
    Credentials,
    DeletePolicy,
    NetPolicy,
    RetrievalPolicy,
    Security,
    ServerSpec,
    fetch,
)
from flask_popaccounts.engine.errors import (
    ConnectionTimeout,
    MailboxInUse,
    PopAccountsError,
    ProtocolError,
)
from tests.support.dovecot import Dovecot
from tests.support.dovecot_sessions import settle
from tests.support.faultproxy import FaultProxy
from tests.support.fetch_worker import ForkServer
from tests.support.mail import make_message
from tests.support.sqlite_store import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
N_MESSAGES = 300


def _check_exactly_once(dovecot: Dovecot, user: str, store: SqliteStore,
                        originals: list[bytes]) -> None:
    rows = store.rows()
    uidls = collections.Counter(r["uidl"] for r in rows)
    dupes = {u: c for u, c in uidls.items() if c > 1}
    assert not dupes, f"{len(dupes)} UIDLs stored more than once"
    stored = [r["raw"] for r in rows]
    original_set = set(originals)
    truncated = [s for s in stored if s not in original_set]
    assert not truncated, f"{len(truncated)} stored messages differ from every original"
    assert sorted(stored) == sorted(originals), (
        f"stored {len(stored)} of {len(originals)}; lost {len(original_set - set(stored))}"
    )
    left = dovecot.server_messages(user)
    assert left == [], f"{len(left)} messages stranded on the server"
    assert all(r["on_server"] == 0 for r in rows), "ledger still thinks some are on the server"


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


def _stored_count(db: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
    except sqlite3.OperationalError:  # no table yet: the first worker has not opened it
        return 0
    finally:
        conn.close()


@pytest.mark.slow
def test_sigkill_at_random_points_stores_each_message_exactly_once(
    dovecot: Dovecot, new_user: tuple[str, str], tmp_path: Path
) -> None:
    user, password = new_user
    rng = random.Random(20261127)
    originals = [make_message(i, body_size=rng.randint(50, 1500), rng=rng)
                 for i in range(N_MESSAGES)]
    dovecot.deliver_many(user, originals)
    db = str(tmp_path / "store.sqlite")
    args = [db, "127.0.0.1", str(dovecot.pop3s_port), dovecot.ca_file, user, password]
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
            left = N_MESSAGES - _stored_count(db)
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
        left = N_MESSAGES - _stored_count(db)
        for _ in range(5):
            workers.start(args)
            rc, printed = workers.end(120)
            if rc == 0:
                break
    assert rc == 0, (printed[-5:], (tmp_path / "worker.err").read_text()[-2000:])
    print(f"kill test: {kills} kills in {attempts} runs, {left} messages left for the "
          f"last run; landed {dict(sorted(landed.items()))}; missed {missed}; "
          f"{kicked} lingering sessions kicked")
    assert kills == N_KILLS, f"only {kills} kills landed; missed: {missed}"
    # Every window of a session was really hit (a paused worker dies exactly there).
    assert {f"at {w}" for w, _ in WINDOWS} <= set(landed), landed

    store = SqliteStore(db)
    try:
        _check_exactly_once(dovecot, user, store, originals)
    finally:
        store.close()


@pytest.mark.slow
def test_connection_reset_at_random_offsets_never_duplicates_or_truncates(
    dovecot: Dovecot, new_user: tuple[str, str], tmp_path: Path
) -> None:
    user, password = new_user
    rng = random.Random(4242)
    originals = [make_message(i, body_size=rng.randint(50, 3000), rng=rng)
                 for i in range(N_MESSAGES)]
    dovecot.deliver_many(user, originals)
    store = SqliteStore(str(tmp_path / "store.sqlite"))
    with FaultProxy("127.0.0.1", dovecot.pop3s_port) as proxy:
        net = NetPolicy(allow_private=True, allowed_ports=frozenset({proxy.port}),
                        ca_file=dovecot.ca_file, connect_timeout=5, read_timeout=10)
        server = ServerSpec("127.0.0.1", proxy.port, Security.SSL, user)
        creds = Credentials(AuthMethod.PASSWORD, password)
        failures: collections.Counter[str] = collections.Counter()
        sessions = kicked = 0
        while proxy.cuts_done < N_CUTS and sessions < 2 * N_CUTS:
            sessions += 1
            kicked += settle(dovecot, user)
            stored = set(store.raw_messages())
            todo = [len(m) for m in originals if m not in stored]
            on_server = len(dovecot.server_messages(user))
            # At most k messages this session, k sized so that the 300 messages last
            # for all the cuts (an empty mailbox would leave only handshakes to cut).
            share = len(todo) // (N_CUTS - proxy.cuts_done)
            cap = max(1, min(80, 6 * share))
            k = rng.randint(min(10, cap), cap)
            # Aim the cut inside the coming session: its messages, plus TLS, UIDL/LIST
            # listings and the DELE round, all estimated (a cut past the end of the
            # session does not land; the loop goes on until 45 have).
            avg = sum(todo) // len(todo) if todo else 0
            session_bytes = min(k, len(todo)) * avg + 3000 + 60 * on_server
            proxy.cut_next(rng.randint(0, session_bytes))
            policy = RetrievalPolicy(delete=DeletePolicy.DELETE, max_messages_per_session=k,
                                     commit_every=rng.choice([1, 4, 16, 64]))
            try:
                fetch(server, creds, policy, store, store, net=net)
            except (ConnectionFailed, ProtocolError, MailboxInUse) as exc:
                failures[exc.code] += 1
                # A cut resets the client at once; a wait for the mailbox (timeout or
                # [IN-USE]) means an earlier session lingers at the server: say so now
                # rather than after many 10 s waits.
                stuck = failures["timeout"] + failures["in_use"]
                assert stuck <= 3, (f"{stuck} sessions waited for the mailbox after "
                                    f"{proxy.cuts_done} cuts; proxy has {proxy.live} live "
                                    f"connections\n{dovecot.log()[-3000:]}")
            except PopAccountsError as exc:  # anything else is a bug: show it
                raise AssertionError(f"unexpected {exc.code}: {exc.detail}") from exc
        left = len(originals) - len(store.raw_messages())
        for _ in range(3):
            proxy.cut_next(None)
            try:
                fetch(server, creds, RetrievalPolicy(delete=DeletePolicy.DELETE), store, store,
                      net=net)
                break
            except (ConnectionTimeout, MailboxInUse):
                continue
        cuts = proxy.cuts_done
    print(f"reset test: {cuts} cuts in {sessions} sessions, {left} messages left for the "
          f"last session; failures {dict(failures)}; {kicked} lingering sessions kicked")
    assert cuts >= N_CUTS, f"only {cuts} cuts landed in {sessions} sessions"
    try:
        _check_exactly_once(dovecot, user, store, originals)
    finally:
        store.close()
