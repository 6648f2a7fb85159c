"""Exactly once into the host's platform: SIGKILL and TCP resets with Maildir and LMTP.

The same interruptions as the built-in store's fault tests (tests/engine/test_faults.py):
150 small messages fetched with delete-after-store from the outside Dovecot, the
fetching process killed 45 times at points it reports (every window of a session, and
for these deliveries also right after the platform took a message and before the ledger
knew: ``delivered``), and, in another run, 45 connections reset at random byte offsets.
With LMTP, every other reset cuts the LMTP connection to the platform instead of the
POP3 one (mid-greeting, mid-TLS, mid-data, or between the data and its 250).

The ledger is SQLite (the engine's side is the store's tests'); the mail is read back
from where it went: the Maildir's files, or the platform's INBOX over IMAP (the bytes
after the X-PopAccounts-Id line the delivery puts in front). Each test ends with the
same checks: every message exactly once, whole, nothing lost, nothing left on the
outside server, the ledger complete and marked gone, no intent left open.
"""

from __future__ import annotations

import collections
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_popaccounts import get_state
from flask_popaccounts.storage.deliveries import records
from flask_popaccounts.storage.deliveries.lmtp import ImapReadBack
from tests.support import deliveryspec, faultruns, realstore
from tests.support.dovecot import Dovecot
from tests.support.faultproxy import FaultProxy
from tests.support.mail import make_message
from tests.support.platform import Platform, as_fetched

ROOT = Path(__file__).resolve().parents[2]
N_MESSAGES = 150
PASSWORD = "platform-secret"

#: The store's windows, and right after a delivery (before its ledger row is committed).
PLAN = faultruns.KillPlan(
    windows=[("connected", 1), ("logged-in", 1), ("listed", 1), ("stored", 0),
             ("delivered", 0), ("committed", 0), ("deleted", 1), ("quit", 1),
             ("marked-gone", 1), ("connected", 2), ("listed", 2)],
    triggers=["connecting", "connected", "delivered", "stored", "committed", "deleting",
              "quitting"],
    need_mail={"stored", "delivered", "committed", "deleting", "deleted", "marked-gone"})


def _delivered(kind: str, where: Any) -> list[bytes]:
    """What the platform holds, as fetched (Maildir: the files; LMTP: IMAP, our header off)."""
    if kind == "maildir":
        root: Path = where
        return [p.read_bytes() for sub in ("new", "cur") for p in sorted((root / sub).iterdir())]
    platform, user = where
    return [as_fetched(stored)[1] for stored in platform.messages(user)]


def _check_exactly_once(kind: str, where: Any, originals: list[bytes], app: Flask,
                        account_id: int, dovecot: Dovecot, user: str) -> int:
    """Asserts every message is there whole (once, unless ``kind`` is "lmtp-blind");
    returns the number of extra copies."""
    stored = _delivered(kind, where)
    counts = collections.Counter(stored)
    dupes = sum(c - 1 for c in counts.values() if c > 1)
    original_set = set(originals)
    truncated = [s for s in stored if s not in original_set]
    lost = original_set - set(stored)
    allowed = dupes if kind == "lmtp-blind" else 0
    assert (dupes, len(truncated), len(lost)) == (allowed, 0, 0), (
        f"{dupes} duplicates, {len(truncated)} truncated, {len(lost)} lost")
    assert max(counts.values()) <= 2, "a message more than twice"
    assert len(stored) == len(originals) + dupes
    ledger = realstore.ledger(app, account_id)
    assert len(ledger) == len(originals), "ledger and platform differ"
    assert not any(ledger.values()), "ledger still thinks some are on the server"
    left = dovecot.server_messages(user)
    assert left == [], f"{len(left)} messages stranded on the server"
    with app.app_context(), get_state(app).session_factory() as session:
        assert records.open_intents(session, account_id) == set()
    return dupes


def _spec(kind: str, tmp_path: Path, platform: Platform, platform_user: str,
          lmtp_port: int | None = None) -> tuple[dict[str, Any], Any]:
    if kind == "maildir":
        return deliveryspec.maildir(str(tmp_path / "Maildir")), tmp_path / "Maildir"
    imaps = None if kind == "lmtp-blind" else platform.imaps_port  # blind: no read-back
    return (deliveryspec.lmtp(lmtp_port or platform.lmtp_port, platform_user,
                              imaps_port=imaps, password=PASSWORD),
            (platform, platform_user))


def _trust(tmp_path: Path, *cas: str) -> str:
    bundle = tmp_path / "trust.pem"
    bundle.write_bytes(b"".join(Path(c).read_bytes() for c in cas))
    return str(bundle)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["maildir", "lmtp"])
def test_sigkill_at_random_points_delivers_each_message_exactly_once(
        kind: str, dovecot: Dovecot, new_user: tuple[str, str], platform: Platform,
        platform_user: str, tmp_path: Path) -> None:
    user, password = new_user
    rng = random.Random(20261203)
    originals = [make_message(i, body_size=rng.randint(50, 1500), rng=rng)
                 for i in range(N_MESSAGES)]
    dovecot.deliver_many(user, originals)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ca = _trust(tmp_path, dovecot.ca_file, platform.ca_file)
    account_id = realstore.prepare(url, dovecot.pop3s_port, ca, user, password)
    spec, where = _spec(kind, tmp_path, platform, platform_user)
    app = realstore.app_for(url, dovecot.pop3s_port, ca, hooks=deliveryspec.hooks_for(spec))
    env = {**os.environ, "PYTHONPATH": str(ROOT), deliveryspec.ENV: json.dumps(spec)}
    args = [url, "127.0.0.1", str(dovecot.pop3s_port), ca, user, password]
    try:
        summary, said = faultruns.kill_runs(dovecot, user, app, args, env, ROOT,
                                            tmp_path / "worker.err", rng, PLAN, N_MESSAGES)
        settled = (said["already-there"] if kind == "maildir"
                   else said["read-back found"])
        print(f"kill test ({kind}): {summary}; {settled} delivered before a kill and "
              f"found on the next run ({said['read-back missing']} read-backs found none)")
        _check_exactly_once(kind, where, originals, app, account_id, dovecot, user)
        # The window that matters was hit: delivered, killed before the ledger knew.
        assert settled >= 1, said
    finally:
        realstore.dispose(app)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["maildir", "lmtp", "lmtp-blind"])
def test_connection_resets_at_random_offsets_never_duplicate_or_truncate(
        kind: str, dovecot: Dovecot, new_user: tuple[str, str], platform: Platform,
        platform_user: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user, password = new_user
    rng = random.Random(4343)
    originals = [make_message(i, body_size=rng.randint(50, 3000), rng=rng)
                 for i in range(N_MESSAGES)]
    dovecot.deliver_many(user, originals)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ca = _trust(tmp_path, dovecot.ca_file, platform.ca_file)
    with FaultProxy("127.0.0.1", dovecot.pop3s_port) as pop, \
            FaultProxy("127.0.0.1", platform.lmtp_port) as lmtp:
        account_id = realstore.prepare(url, pop.port, ca, user, password)
        spec, where = _spec(kind, tmp_path, platform, platform_user, lmtp.port)
        app = realstore.app_for(url, pop.port, ca, hooks=deliveryspec.hooks_for(spec))
        looked: collections.Counter[bool] = collections.Counter()
        real_back = ImapReadBack.__call__

        def read_back(self: ImapReadBack, *args: Any) -> bool:
            looked[found := real_back(self, *args)] += 1
            return found

        monkeypatch.setattr(ImapReadBack, "__call__", read_back)
        try:
            summary = faultruns.cut_runs(app, account_id, dovecot, user, originals, pop, rng,
                                         monkeypatch,
                                         lmtp=lmtp if kind.startswith("lmtp") else None)
            dupes = _check_exactly_once(kind, where, originals, app, account_id, dovecot,
                                        user)
            print(f"reset test ({kind}): {summary}; read-backs after a cut mid-delivery: "
                  f"{looked[True]} found it delivered, {looked[False]} not; {dupes} "
                  f"delivered twice")
        finally:
            realstore.dispose(app)
        if kind == "lmtp":  # some cuts lost the 250 of a delivered message: read back
            assert looked[True] >= 1, looked
        if kind == "lmtp-blind":  # without a read-back: at most the one in flight per cut
            assert dupes <= lmtp.cuts_done
