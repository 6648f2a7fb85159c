"""The fetch algorithm against a real Dovecot: policies, limits, resets, rollback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flask_popaccounts.engine import (
    AuthMethod,
    Credentials,
    DeletePolicy,
    FetchReport,
    NetPolicy,
    POP3Client,
    Progress,
    RetrievalPolicy,
    Security,
    ServerSpec,
    fetch,
)
from flask_popaccounts.engine import errors as E
from flask_popaccounts.engine.types import RetrievedMessage
from tests.support.dovecot import Dovecot
from tests.support.mail import ARABIC_SUBJECT, make_message
from tests.support.sqlite_store import SqliteStore


class Env:
    """One user's mailbox + a sqlite store + a settable clock."""

    def __init__(self, dovecot: Dovecot, user: str, pw: str, net: NetPolicy, tmp: Path) -> None:
        self.dovecot, self.user, self.net = dovecot, user, net
        self.clock = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
        self.store = SqliteStore(str(tmp / "store.sqlite"), clock=lambda: self.clock)
        self.server = ServerSpec("localhost", dovecot.pop3s_port, Security.SSL, user)
        self.creds = Credentials(AuthMethod.PASSWORD, pw)

    def fetch(self, policy: RetrievalPolicy | None = None, **kw: object) -> FetchReport:
        return fetch(self.server, self.creds, policy or RetrievalPolicy(), self.store,
                     self.store, net=self.net, now=lambda: self.clock, **kw)  # type: ignore[arg-type]

    def deliver(self, msgs: list[bytes]) -> None:
        self.dovecot.deliver_many(self.user, msgs)

    def on_server(self) -> list[bytes]:
        return self.dovecot.server_messages(self.user)


@pytest.fixture
def env(dovecot: Dovecot, new_user: tuple[str, str], dovecot_net: NetPolicy,
        tmp_path: Path) -> Env:
    return Env(dovecot, *new_user, dovecot_net, tmp_path)


def test_keep_fetches_once_and_leaves_mail(env: Env) -> None:
    msgs = [make_message(i) for i in range(12)]
    env.deliver(msgs)
    seen: list[Progress] = []
    r = env.fetch(progress=seen.append)
    assert (r.server_count, r.new, r.stored, r.deleted) == (12, 12, 12, 0)
    assert sorted(env.store.raw_messages()) == sorted(msgs)
    assert [p.done for p in seen] == list(range(1, 13))
    assert seen[-1].total == 12 and seen[-1].bytes_done == seen[-1].bytes_total == r.bytes_stored
    assert "PIPELINING" in r.capabilities
    again = env.fetch()
    assert (again.new, again.stored) == (0, 0)
    assert len(env.on_server()) == 12
    env.deliver([make_message(99)])
    assert env.fetch().stored == 1
    assert len(env.store.raw_messages()) == 13


def test_delete_after_storing(env: Env) -> None:
    msgs = [make_message(i) for i in range(7)]
    env.deliver(msgs)
    r = env.fetch(RetrievalPolicy(delete=DeletePolicy.DELETE, commit_every=3))
    assert (r.stored, r.deleted) == (7, 7)
    assert env.on_server() == []
    assert all(row["on_server"] == 0 for row in env.store.rows())
    assert env.store.commits == 3  # 3 + 3 + 1: group commit


def test_delete_after_days_uses_stored_time(env: Env) -> None:
    env.deliver([make_message(i) for i in range(3)])
    policy = RetrievalPolicy(delete=DeletePolicy.AFTER_DAYS, delete_after_days=3)
    assert env.fetch(policy).deleted == 0
    env.clock += timedelta(days=2)
    env.deliver([make_message(10)])  # stored two days later than the first three
    assert env.fetch(policy).deleted == 0
    env.clock += timedelta(days=1, minutes=1)
    r = env.fetch(policy)
    assert r.deleted == 3 and len(env.on_server()) == 1
    env.clock += timedelta(days=2)
    assert env.fetch(policy).deleted == 1
    assert env.on_server() == []
    assert [row["on_server"] for row in env.store.rows()] == [0, 0, 0, 0]


def test_switching_keep_to_delete_removes_earlier_mail(env: Env) -> None:
    env.deliver([make_message(i) for i in range(4)])
    env.fetch()
    assert len(env.on_server()) == 4
    r = env.fetch(RetrievalPolicy(delete=DeletePolicy.DELETE))
    assert (r.stored, r.deleted) == (0, 4)
    assert env.on_server() == []


def test_too_large_is_skipped_and_left_on_server(env: Env) -> None:
    big = make_message(1, body_size=20_000)
    env.deliver([make_message(0), big, make_message(2)])
    policy = RetrievalPolicy(delete=DeletePolicy.DELETE, max_message_size=10_000)
    r = env.fetch(policy)
    assert r.stored == 2 and len(r.skipped_too_large) == 1
    assert env.on_server() == [big]
    assert big not in env.store.raw_messages()
    r2 = env.fetch(policy)  # still skipped, still reported, never fetched
    assert r2.stored == 0 and len(r2.skipped_too_large) == 1


def test_max_messages_per_session(env: Env) -> None:
    msgs = [make_message(i) for i in range(10)]
    env.deliver(msgs)
    policy = RetrievalPolicy(max_messages_per_session=4)
    reports = [env.fetch(policy) for _ in range(3)]
    assert [r.stored for r in reports] == [4, 4, 2]
    assert [r.more_pending for r in reports] == [True, True, False]
    assert sorted(env.store.raw_messages()) == sorted(msgs)


def test_uidl_reset_is_reported_not_reimported(env: Env) -> None:
    env.deliver([make_message(i) for i in range(6)])
    env.fetch()
    env.dovecot.reset_uidls(env.user)  # the provider "rebuilt" the mailbox
    with pytest.raises(E.UIDLReset) as info:
        env.fetch()
    assert info.value.needs_user
    assert len(env.store.raw_messages()) == 6
    r = env.fetch(RetrievalPolicy(accept_uidl_reset=True))  # the user confirmed
    assert r.stored == 6


def test_mail_deleted_elsewhere_is_marked_gone(env: Env) -> None:
    env.deliver([make_message(i) for i in range(3)])
    env.fetch()
    md = env.dovecot.maildir(env.user)
    victim = sorted((md / "cur").iterdir())[0]
    victim.unlink()
    env.fetch()
    assert sorted(row["on_server"] for row in env.store.rows()) == [0, 1, 1]


def test_metadata_arabic_subject_and_dates(env: Env) -> None:
    env.deliver([
        make_message(1, subject=ARABIC_SUBJECT),
        make_message(2, date=None,
                     extra_headers="Received: from a by b; Mon, 2 Jun 2025 08:00:00 +0300\r\n"
                                   "Received: from c by d; Sun, 1 Jun 2025 08:00:00 +0000"),
        make_message(3, date=None),
    ])
    env.fetch()
    rows = {row["subject"]: row for row in env.store.rows()}
    assert ARABIC_SUBJECT in rows
    assert rows[ARABIC_SUBJECT]["sent_at"] == "2025-07-01T08:52:37+00:00"
    assert rows["Test message 2"]["sent_at"] == "2025-06-02T05:00:00+00:00"
    assert rows["Test message 2"]["sent_at_source"] == "received"
    assert rows["Test message 3"]["sent_at_source"] == "fetched"
    assert rows["Test message 3"]["sent_at"] == env.clock.isoformat()


def test_malformed_and_awkward_messages_are_stored_exactly(env: Env) -> None:
    awkward = [
        b"no header separator at all and \xff\xfe binary junk\r\n.\r\n..\r\n",
        b"Subject: =?utf-8?B?broken?= =?x-unknown?Q?zz?=\r\nDate: yesterday\r\n\r\nbody\r\n",
        b"Subject: long line\r\n\r\n" + b"x" * 300_000 + b"\r\n.starts with dot\r\n",
        "Subject: خام UTF-8 bytes\r\nFrom: Zoë <z@example.org>\r\n\r\nنص\r\n".encode(),
        b"Subject: ends with a dot line\r\n\r\nline\r\n.\r\n",
    ]
    env.deliver(awkward)
    r = env.fetch()
    assert r.stored == len(awkward)
    assert sorted(env.store.raw_messages()) == sorted(awkward)
    subjects = {row["subject"] for row in env.store.rows()}
    assert "خام UTF-8 bytes" in subjects
    assert env.fetch().stored == 0


def test_lock_step_equals_pipelined(env: Env) -> None:
    msgs = [make_message(i, body_size=3000) for i in range(9)]
    env.deliver(msgs)
    client = POP3Client.open(env.server, env.net)
    try:
        client.login(env.user, env.creds)
        sizes = client.list_sizes()
        piped = [s.read() for _, _, s in client.retrieve(sorted(sizes), sizes)]
        client.capabilities = client.capabilities - {"PIPELINING"}  # force lock-step
        lock = [s.read() for _, _, s in client.retrieve(sorted(sizes), sizes)]
        client.quit()
    finally:
        client.close()
    assert piped == lock
    assert sorted(piped) == sorted(msgs)


class FailingStore(SqliteStore):
    def __init__(self, path: str, fail_at: int) -> None:
        super().__init__(path)
        self.fail_at = fail_at
        self.added = 0

    def add(self, message: RetrievedMessage) -> None:
        self.added += 1
        if self.added == self.fail_at:
            raise OSError("disk full")
        super().add(message)


def test_sink_failure_rolls_back_and_deletes_nothing(env: Env, tmp_path: Path) -> None:
    msgs = [make_message(i) for i in range(10)]
    env.deliver(msgs)
    store = FailingStore(str(tmp_path / "failing.sqlite"), fail_at=7)
    with pytest.raises(OSError, match="disk full"):
        fetch(env.server, env.creds, RetrievalPolicy(delete=DeletePolicy.DELETE, commit_every=4),
              store, store, net=env.net)
    assert store.rollbacks == 1
    assert len(store.raw_messages()) == 4  # the first group commit survived
    assert len(env.on_server()) == 10  # no DELE without a completed session
    store.fail_at = 0
    fetch(env.server, env.creds, RetrievalPolicy(delete=DeletePolicy.DELETE), store, store,
          net=env.net)
    assert sorted(store.raw_messages()) == sorted(msgs)
    assert env.on_server() == []


class CrashingMarkGone(SqliteStore):
    """Dies between QUIT's +OK and the ledger update, like a kill -9 at that instant."""

    crash = True

    def mark_gone(self, uidls: object) -> None:
        if self.crash:
            raise KeyboardInterrupt("killed after QUIT")
        super().mark_gone(uidls)  # type: ignore[arg-type]


def test_crash_after_quit_before_mark_gone_is_not_a_uidl_reset(env: Env, tmp_path: Path) -> None:
    first = [make_message(i) for i in range(8)]
    env.deliver(first)
    store = CrashingMarkGone(str(tmp_path / "crash.sqlite"))
    policy = RetrievalPolicy(delete=DeletePolicy.DELETE)
    with pytest.raises(KeyboardInterrupt):
        fetch(env.server, env.creds, policy, store, store, net=env.net)
    assert env.on_server() == []  # QUIT went through: the server deleted them
    assert all(row["on_server"] == 1 for row in store.rows())  # the ledger never heard
    later = [make_message(100 + i) for i in range(20)]
    env.deliver(later)
    store.crash = False
    r = fetch(env.server, env.creds, policy, store, store, net=env.net)
    assert r.stored == 20
    assert sorted(store.raw_messages()) == sorted(first + later)
    assert all(row["on_server"] == 0 for row in store.rows())
