"""The two fault loops of the exactly-once tests: SIGKILL at chosen points, TCP resets.

:func:`kill_runs` kills ``fetch_worker`` processes 45 times (every other one held still
at a window of a session and killed exactly there, the others killed a moment after a
trigger line, wherever they got to), then lets one finish. :func:`cut_runs` fetches in
this process through :class:`~tests.support.faultproxy.FaultProxy` until 45 connections
have been reset at random byte offsets, cutting the POP3 connection or, when a second
proxy is given (in front of the platform's LMTP), that one on every other session: half
of those anywhere, half where the platform's next reply is lost (after the data: the
message arrived, its 250 did not).
Both only interrupt; the caller checks what was stored (see the tests).
"""

from __future__ import annotations

import collections
import dataclasses
import random
from pathlib import Path
from typing import IO, Any

from flask import Flask

from flask_popaccounts import get_state
from flask_popaccounts.engine.delivery import DeliveryUnavailable
from flask_popaccounts.engine.errors import (
    ConnectionFailed,
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


@dataclasses.dataclass
class KillPlan:
    """Where kills land: ``windows`` a paused worker is killed at, ``triggers`` after
    which a running one is killed, ``need_mail`` the phases that come only with mail."""

    windows: list[tuple[str, int]]
    triggers: list[str]
    need_mail: set[str]
    n_kills: int = 45


def kill_runs(dovecot: Dovecot, user: str, app: Flask, args: list[str], env: dict[str, str],
              root: Path, err_path: Path, rng: random.Random, plan: KillPlan,
              n_messages: int) -> tuple[str, collections.Counter[str]]:
    """Kill ``plan.n_kills`` workers, then let one finish; a one-line summary and how
    often each line the workers printed came (its first two words)."""
    windows: list[tuple[str, int]] = []
    for _ in range(plan.n_kills // len(plan.windows) + 1):
        windows += rng.sample(plan.windows, len(plan.windows))
    kills = kicked = attempts = 0
    landed: collections.Counter[str] = collections.Counter()
    missed: list[str] = []
    with open(err_path, "wb") as err, ForkServer(root, env, err) as workers:
        while kills < plan.n_kills and attempts < 2 * plan.n_kills:
            attempts += 1
            kicked += settle(dovecot, user)
            # Sessions sized so that the messages last for all the kills.
            left = n_messages - realstore.ledger_count(app)
            share = max(1, left // (plan.n_kills - kills))
            per_session = rng.randint(1, max(1, min(20, 3 * share)))
            commit_every = rng.choice([1, 3, 8, 20])
            paused = attempts % 2 == 1
            phase, n = windows.pop(0) if paused else (rng.choice(plan.triggers), 1)
            if not paused and phase in ("stored", "committed", "delivered"):
                n = 0  # after a random one of them
            if phase in plan.need_mail and left == 0:
                phase, n = "listed", 1  # an empty mailbox: kill where there still is a step
            if n == 0:
                commits = -(-per_session // commit_every)
                n = rng.randint(1, commits if phase == "committed" else per_session)
            stop = f"{phase}:{n}" if paused else "-"
            workers.start([*args, str(commit_every), str(per_session), stop])
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
            if rc == -9:
                kills += 1
                last = [ln for ln in printed if not ln.startswith("STOP")][-1]
                landed[f"{'at' if paused else 'after'} {last.split(' ', 1)[0]}"] += 1
            else:
                missed.append(f"{stop if paused else phase}: rc {rc}, {printed[-1:]}")
        left = n_messages - realstore.ledger_count(app)
        for _ in range(5):  # now let it finish, through transient errors
            workers.start(args)
            rc, printed = workers.end(120)
            if rc == 0:
                break
        said = collections.Counter(" ".join(ln.split()[:2]) for ln in workers.lines.lines)
    assert rc == 0, (printed[-5:], err_path.read_text()[-2000:])
    summary = (f"{kills} kills in {attempts} runs, {left} messages left for the last run; "
               f"landed {dict(sorted(landed.items()))}; missed {missed}; "
               f"{kicked} lingering sessions kicked")
    assert kills == plan.n_kills, f"only {kills} kills landed; missed: {missed}"
    assert {f"at {w}" for w, _ in plan.windows} <= set(landed), landed
    return summary, said


class Downloaded:
    """Counts the message bytes read off the POP3 wire, complete or cut off."""

    def __init__(self, monkeypatch: Any) -> None:
        self.octets = 0
        real = Wire.read_body_into

        def counting(wire: Wire, out: IO[bytes], limit: int | None = None) -> int:
            try:
                return real(wire, out, limit)
            finally:
                self.octets += out.tell()

        monkeypatch.setattr(Wire, "read_body_into", counting)


def retry_set_aside(app: Flask, account_id: int) -> int:
    """Press Retry on every message set aside (cut three times while in flight)."""
    with get_state(app).session_factory() as session:
        account = session.get(Account, account_id)
        assert account is not None
        uidls = [r.uidl for r in mailproblems.problems(session, account_id)
                 if r.kind == "set_aside"]
        for uidl in uidls:
            assert mailproblems.retry(session, account, uidl, now=get_state(app).clock())
    return len(uidls)


#: What a cut session may fail with: the network, the server, the platform (LMTP).
CUT_FAILURES = (ConnectionFailed, ProtocolError, MailboxInUse, DeliveryUnavailable)


def cut_runs(app: Flask, account_id: int, dovecot: Dovecot, user: str,
             originals: list[bytes], pop: FaultProxy, rng: random.Random, monkeypatch: Any,
             *, lmtp: FaultProxy | None = None, n_cuts: int = 45) -> str:
    """Fetch session after session, each cut somewhere, until ``n_cuts`` cuts landed;
    then retry what was set aside and fetch the rest uncut. A one-line summary; asserts
    that a cut cost at most the message in flight (bytes downloaded in all)."""
    commit_every = [64]
    real_policy = fetching.retrieval_policy_for

    def policy(app: Flask, account: Account) -> Any:  # the group size varies per session
        return dataclasses.replace(real_policy(app, account), commit_every=commit_every[0])

    monkeypatch.setattr(fetching, "retrieval_policy_for", policy)
    downloaded = Downloaded(monkeypatch)
    proxies = [p for p in (pop, lmtp) if p is not None]
    failures: collections.Counter[str] = collections.Counter()
    sessions = kicked = 0
    avg = sum(map(len, originals)) // len(originals)

    def cuts() -> int:
        return sum(p.cuts_done for p in proxies)

    with app.app_context():
        while cuts() < n_cuts and sessions < 2 * n_cuts:
            sessions += 1
            kicked += settle(dovecot, user)
            todo = len(originals) - realstore.ledger_count(app)
            on_server = len(dovecot.server_messages(user))
            share = todo // max(1, n_cuts - cuts())
            cap = max(1, min(40, 6 * share))
            k = rng.randint(min(10, cap), cap)
            for proxy in proxies:
                proxy.forget_cuts()  # a connection not made last time takes no cut now
            target = lmtp if lmtp is not None and sessions % 2 == 0 and todo else pop
            # Aim inside the coming session: its messages plus handshakes and listings.
            if target is pop:
                target.cut_next(rng.randint(0, min(k, todo) * avg + 3000 + 60 * on_server))
            elif sessions % 4 == 0:  # LMTP: anywhere, both directions counted
                target.cut_next(rng.randint(0, min(k, todo) * (avg + 150) + 4000))
            else:  # LMTP: the platform's reply lost, e.g. the 250 to a message's data
                target.cut_next(rng.randint(0, min(k, todo) * (avg + 100) + 1500),
                                on_reply=True)
            app.config["POPACCOUNTS_MAX_MESSAGES_PER_SESSION"] = k
            commit_every[0] = rng.choice([1, 4, 16, 64])
            try:
                fetching.fetch_account(app, account_id, max_sessions=1)
            except CUT_FAILURES as exc:
                failures[exc.code] += 1
                stuck = failures["timeout"] + failures["in_use"]
                assert stuck <= 3, (f"{stuck} sessions waited for the mailbox\n"
                                    f"{dovecot.log()[-2000:]}")
            except PopAccountsError as exc:  # anything else is a bug: show it
                raise AssertionError(f"unexpected {exc.code}: {exc.detail}") from exc
        left = len(originals) - realstore.ledger_count(app)
        set_aside = retry_set_aside(app, account_id)
        app.config["POPACCOUNTS_MAX_MESSAGES_PER_SESSION"] = 1000
        for proxy in proxies:
            proxy.forget_cuts()
        for _ in range(3):
            try:
                fetching.fetch_account(app, account_id)
                break
            except (ConnectionTimeout, MailboxInUse):
                continue
    done = cuts()
    mailbox_bytes = sum(map(len, originals))
    ratio = downloaded.octets / mailbox_bytes
    assert done >= n_cuts, f"only {done} cuts landed in {sessions} sessions"
    # A cut costs at most the message in flight: the complete ones are kept.
    assert downloaded.octets <= mailbox_bytes + done * max(map(len, originals)), ratio
    return (f"{done} cuts in {sessions} sessions ({pop.cuts_done} of POP3"
            + (f", {lmtp.cuts_done} of LMTP" if lmtp is not None else "")
            + f"), {left} messages left for the last session, {set_aside} set aside and "
            f"retried; failures {dict(failures)}; {kicked} lingering sessions kicked; "
            f"message bytes downloaded {downloaded.octets} / mailbox {mailbox_bytes} = "
            f"{ratio:.3f}")
