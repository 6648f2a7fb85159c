"""The first import "from now on" in the engine, against a real Dovecot: the listing is
recorded as seen (nothing downloaded), later mail is fetched, and no delete policy ever
removes what was only seen."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import timedelta
from pathlib import Path

import pytest

from flask_popaccounts.engine import DeletePolicy, NetPolicy, RetrievalPolicy
from flask_popaccounts.engine.types import LedgerEntry
from tests.support.dovecot import Dovecot
from tests.support.mail import make_message
from tests.support.sqlite_store import SqliteStore

from .test_sync import Env


class SeenStore(SqliteStore):
    """The test store, plus the seen-only UIDLs of a first import (kept in memory)."""

    def __init__(self, path: str, *, clock: object = None) -> None:
        super().__init__(path, clock=clock)
        self.seen: dict[str, LedgerEntry] = {}
        self.first_import_done = 0

    def entries(self) -> Mapping[str, LedgerEntry]:
        return {**self.seen, **super().entries()}

    def mark_seen(self, uidls: Collection[str]) -> None:
        now = self._clock()  # type: ignore[operator]
        self.seen.update({u: LedgerEntry(now, True, seen_only=True) for u in uidls})
        self.first_import_done += 1

    def mark_gone(self, uidls: Collection[str]) -> None:
        super().mark_gone(uidls)
        for u in set(uidls) & set(self.seen):
            self.seen[u] = LedgerEntry(self.seen[u].stored_at, False, seen_only=True)


@pytest.fixture
def env(dovecot: Dovecot, new_user: tuple[str, str], dovecot_net: NetPolicy,
        tmp_path: Path) -> Env:
    env = Env(dovecot, *new_user, dovecot_net, tmp_path)
    env.store = SeenStore(str(tmp_path / "seen.sqlite"), clock=lambda: env.clock)
    return env


@pytest.mark.parametrize("delete", [DeletePolicy.DELETE, DeletePolicy.AFTER_DAYS])
def test_listing_seen_then_only_new_mail(env: Env, delete: DeletePolicy) -> None:
    old = [make_message(i) for i in range(3)]
    env.deliver(old)
    policy = RetrievalPolicy(delete=delete, delete_after_days=2)
    first = env.fetch(RetrievalPolicy(delete=delete, delete_after_days=2,
                                      mark_listing_seen=True))
    store = env.store
    assert isinstance(store, SeenStore)
    assert (first.server_count, first.marked_seen, first.new, first.stored, first.deleted) == (
        3, 3, 0, 0, 0)
    assert store.first_import_done == 1 and store.raw_messages() == []
    assert sorted(env.on_server()) == sorted(old)

    new = [make_message(i) for i in (10, 11)]
    env.deliver(new)
    env.clock += timedelta(days=30)  # everything is old enough for "after N days" now
    second = env.fetch(policy)
    assert (second.new, second.stored) == (2, 2)
    assert store.raw_messages() == new
    if delete is DeletePolicy.AFTER_DAYS:  # the new ones were stored just now
        assert second.deleted == 0
        env.clock += timedelta(days=3)
        assert env.fetch(policy).deleted == 2
    else:
        assert second.deleted == 2
    assert sorted(env.on_server()) == sorted(old)  # seen only: never deleted
    assert env.fetch(policy).new == 0


def test_empty_mailbox_still_ends_the_first_import(env: Env) -> None:
    r = env.fetch(RetrievalPolicy(mark_listing_seen=True))
    assert (r.marked_seen, r.stored) == (0, 0)
    store = env.store
    assert isinstance(store, SeenStore) and store.first_import_done == 1


def test_a_fenced_off_first_import_records_nothing(env: Env) -> None:
    env.deliver([make_message(1)])

    class Lost(Exception):
        pass

    def fence() -> None:
        raise Lost()

    with pytest.raises(Lost):
        env.fetch(RetrievalPolicy(mark_listing_seen=True), fence=fence)
    store = env.store
    assert isinstance(store, SeenStore) and store.seen == {} and store.first_import_done == 0


def test_uidls_already_known_are_left_alone(env: Env) -> None:
    env.deliver([make_message(1)])
    assert env.fetch().stored == 1
    env.deliver([make_message(2)])
    r = env.fetch(RetrievalPolicy(mark_listing_seen=True))
    store = env.store
    assert isinstance(store, SeenStore)
    assert r.marked_seen == 1 and len(store.seen) == 1 and len(store.raw_messages()) == 1
