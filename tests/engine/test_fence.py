"""The fence: a fetch that lost its claim on the account stops before DELE, or before QUIT.

What the user would check: nothing is deleted from the server by a process that no
longer owns the account (its DELEs are undone, since QUIT never comes), and what it
stored stays stored, exactly once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flask_popaccounts.engine import DeletePolicy, RetrievalPolicy, fetch
from tests.support.hostilepop import HostilePOP
from tests.support.mail import make_message
from tests.support.sqlite_store import SqliteStore


class Fenced(RuntimeError):
    pass


def _fence_falling_at(call: int):  # type: ignore[no-untyped-def]
    calls = []

    def fence() -> None:
        calls.append(1)
        if len(calls) == call:
            raise Fenced

    return fence


@pytest.mark.parametrize("falls_at, what", [(1, "before DELE"), (2, "before QUIT")])
def test_a_fenced_fetch_deletes_nothing_and_keeps_what_it_stored(
        tmp_path: Path, falls_at: int, what: str) -> None:
    raws = [make_message(i) for i in range(4)]
    with HostilePOP([(b"u%d" % i, r) for i, r in enumerate(raws)]) as srv:
        store = SqliteStore(str(tmp_path / "s.sqlite"))
        with pytest.raises(Fenced):
            fetch(srv.server_spec(), srv.creds(), RetrievalPolicy(delete=DeletePolicy.DELETE),
                  store, store, net=srv.net_policy(), fence=_fence_falling_at(falls_at))
        assert sorted(store.raw_messages()) == sorted(raws)  # committed before the fence
        assert [m for _, m in srv.messages] == raws, what  # all still on the server
        sent = srv.sessions[-1]
        assert b"QUIT" not in sent
        assert any(c.startswith(b"DELE") for c in sent) == (falls_at == 2)
        # the owner that took over deletes them, without fetching them again
        report = fetch(srv.server_spec(), srv.creds(), RetrievalPolicy(delete=DeletePolicy.DELETE),
                       store, store, net=srv.net_policy())
        assert (report.stored, report.deleted, srv.messages) == (0, 4, [])
