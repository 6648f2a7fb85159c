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
The two loops are tests/support/faultruns.py's, shared with the host deliveries' fault
tests (tests/deliveries/test_delivery_faults.py).
"""

from __future__ import annotations

import collections
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from tests.support import faultruns, realstore
from tests.support.dovecot import Dovecot
from tests.support.faultproxy import FaultProxy
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


#: The kill test's plan (tests/support/faultruns.py runs it).
PLAN = faultruns.KillPlan(windows=WINDOWS, triggers=TRIGGERS, need_mail=NEED_MAIL,
                          n_kills=N_KILLS)


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
    summary, _said = faultruns.kill_runs(dovecot, user, app, args, env, ROOT,
                                         tmp_path / "worker.err", rng, PLAN, N_MESSAGES)
    print(f"kill test ({store_url.split(':')[0]}): {summary}")
    _check_exactly_once(dovecot, user, app, account_id, originals)


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
    with FaultProxy("127.0.0.1", dovecot.pop3s_port) as proxy:
        account_id = realstore.prepare(store_url, proxy.port, dovecot.ca_file, user, password)
        app = realstore.app_for(store_url, proxy.port, dovecot.ca_file)
        control.append(app)
        # A cut costs at most the message in flight (asserted there, by the bytes read).
        summary = faultruns.cut_runs(app, account_id, dovecot, user, originals, proxy, rng,
                                     monkeypatch, n_cuts=N_CUTS)
    print(f"reset test ({store_url.split(':')[0]}): {summary}")
    _check_exactly_once(dovecot, user, app, account_id, originals)
