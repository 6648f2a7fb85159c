"""The misbehaving test server itself behaves like a POP3 server when told no quirk.

Every hostile-server test relies on this baseline: a clean fetch stores each message
byte for byte, and DELE takes effect at QUIT, as on Dovecot.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flask_popaccounts.engine import DeletePolicy, RetrievalPolicy, fetch
from tests.support.hostilepop import HostilePOP
from tests.support.mail import make_message
from tests.support.sqlite_store import SqliteStore


@pytest.mark.parametrize("implicit_tls", [False, True])
def test_clean_server_fetches_everything_and_deletes_at_quit(tmp_path: Path,
                                                             implicit_tls: bool) -> None:
    raws = [make_message(i) for i in range(5)]
    with HostilePOP([(b"u%d" % i, r) for i, r in enumerate(raws)],
                    implicit_tls=implicit_tls) as srv:
        store = SqliteStore(str(tmp_path / "s.sqlite"))
        report = fetch(srv.server_spec(), srv.creds(), RetrievalPolicy(delete=DeletePolicy.DELETE),
                       store, store, net=srv.net_policy())
        assert report.stored == 5
        assert sorted(store.raw_messages()) == sorted(raws)
        assert srv.messages == []
        assert not srv.errors


def _fetch(srv: HostilePOP, store: SqliteStore, **policy: object):  # type: ignore[no-untyped-def]
    return fetch(srv.server_spec(), srv.creds(), RetrievalPolicy(**policy),  # type: ignore[arg-type]
                 store, store, net=srv.net_policy())


def test_refused_retr_skips_that_message_only(tmp_path: Path) -> None:
    raws = [make_message(i) for i in range(4)]
    with HostilePOP([(b"u%d" % i, r) for i, r in enumerate(raws)]) as srv:
        srv.quirks.retr_error = {2: b"-ERR [SYS/TEMP] storage hiccup"}
        store = SqliteStore(str(tmp_path / "s.sqlite"))
        report = _fetch(srv, store, delete=DeletePolicy.DELETE)
        assert sorted(store.raw_messages()) == sorted(raws[:1] + raws[2:])
        assert report.refused == {"u1": "[SYS/TEMP] storage hiccup"}
        assert srv.messages == [(b"u1", raws[1])]  # never deleted: never stored
        srv.quirks.retr_error = {}
        report = _fetch(srv, store, delete=DeletePolicy.DELETE)
        assert report.stored == 1 and sorted(store.raw_messages()) == sorted(raws)
        assert srv.messages == []


def test_repeated_and_nonconforming_uidls_are_all_fetched_under_stable_keys(
        tmp_path: Path) -> None:
    raws = [make_message(i) for i in range(5)]
    uidls = [b"same", b"same", b"ctl\x01char", b"x" * 100, b"ok-1"]
    with HostilePOP(list(zip(uidls, raws, strict=True))) as srv:
        store = SqliteStore(str(tmp_path / "s.sqlite"))
        report = _fetch(srv, store)
        assert sorted(store.raw_messages()) == sorted(raws)
        assert (report.uidl_duplicates, report.uidl_nonconforming) == (1, 2)
        keys = set(store.entries())
        assert {"same", "ok-1"} <= keys and all(len(k) <= 70 for k in keys)
        again = _fetch(srv, store)  # the same keys next session: nothing new
        assert again.stored == 0 and len(store.raw_messages()) == 5
