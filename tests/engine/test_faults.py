"""Exactly once under faults: SIGKILL of the fetching process, TCP resets mid-stream.

Both runs fetch 300 small messages with delete-after-store into the durable sqlite
store, against the real Dovecot, and end with the same checks: the stored set equals
the delivered set byte for byte, no UIDL stored twice, nothing truncated, nothing left
on the server, every ledger row marked gone.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
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
from tests.support.faultproxy import FaultProxy
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
    cmd = [sys.executable, "-m", "tests.support.fetch_worker", db, "127.0.0.1",
           str(dovecot.pop3s_port), dovecot.ca_file, user, password]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    kills = 0
    completed_early = 0
    phases: collections.Counter[str] = collections.Counter()
    attempts = 0
    while kills < 45 and attempts < 90:
        attempts += 1
        # Short sessions (12 messages): many commit/DELE/QUIT phases to land in.
        proc = subprocess.Popen([*cmd, str(rng.choice([1, 3, 8, 20])), "12"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # Kill at a random moment early on (connect, TLS, login, UIDL), or after a
        # random number of stored messages (mid-RETR, mid-commit), or right after a
        # session's last message (the commit, DELE, QUIT and mark_gone phase).
        assert proc.stdout is not None
        mode = rng.random()
        if mode < 0.2:
            phases["early"] += 1
            time.sleep(rng.uniform(0.0, 0.35))
        elif mode < 0.7:
            phases["mid"] += 1
            for _ in range(rng.randint(1, 12)):
                line = proc.stdout.readline()
                if not line or line.startswith(b"DONE"):
                    break
            if rng.random() < 0.5:
                time.sleep(rng.uniform(0.0, 0.02))
        else:
            phases["session end"] += 1
            while (line := proc.stdout.readline()).startswith(b"P "):
                done, total = line.split()[1].split(b"/")
                if done == total:
                    break
            time.sleep(rng.uniform(0.0, 0.03))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        else:
            completed_early += 1
        proc.communicate(timeout=30)
        if completed_early >= 3:
            break  # everything fetched; the rest of the kills would hit an empty mailbox

    # Now let it finish, retrying through transient errors like a scheduler would.
    for _ in range(5):
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=120)
        if done.returncode == 0:
            break
    assert done.returncode == 0, done.stdout[-500:] + done.stderr[-2000:]
    print(f"kill test: {kills} kills ({dict(phases)}), {completed_early} runs finished first")
    assert kills >= 30, f"only {kills} kills landed"

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
        cuts = 0
        for _ in range(45):
            stored = set(store.raw_messages())
            todo = [len(m) for m in originals if m not in stored]
            on_server = len(dovecot.server_messages(user))
            if not todo and not on_server:
                break
            # Aim the cut inside the coming session: its messages (at most k), plus
            # TLS, UIDL/LIST listings and the DELE round, all estimated.
            k = rng.randint(10, 80)
            avg = sum(todo) // len(todo) if todo else 0
            session_bytes = min(k, len(todo)) * avg + 3000 + 60 * on_server
            proxy.cut_next(rng.randint(0, session_bytes))
            policy = RetrievalPolicy(delete=DeletePolicy.DELETE, max_messages_per_session=k,
                                     commit_every=rng.choice([1, 4, 16, 64]))
            try:
                fetch(server, creds, policy, store, store, net=net)
            except (ConnectionFailed, ProtocolError, MailboxInUse) as exc:
                failures[exc.code] += 1
            except PopAccountsError as exc:  # anything else is a bug: show it
                raise AssertionError(f"unexpected {exc.code}: {exc.detail}") from exc
            cuts = proxy.cuts_done
        for _ in range(3):
            proxy.cut_next(None)
            try:
                fetch(server, creds, RetrievalPolicy(delete=DeletePolicy.DELETE), store, store,
                      net=net)
                break
            except (ConnectionTimeout, MailboxInUse):
                continue
    assert cuts >= 30, f"only {cuts} cuts landed ({dict(failures)})"
    try:
        _check_exactly_once(dovecot, user, store, originals)
    finally:
        store.close()
