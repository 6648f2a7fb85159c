"""What a failed session keeps (issue 11, item 2), against the hostile POP3 server.

A failure on the server's side (the connection cut, the session deadline) commits the
messages that had arrived complete, names the one in flight, and the next session asks
only for what is left; a stream that lost step (ProtocolError) or a failing sink rolls
back instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flask_popaccounts.engine import DeletePolicy, RetrievalPolicy, fetch
from flask_popaccounts.engine.errors import ConnectionFailed, ConnectionTimeout, ProtocolError
from flask_popaccounts.engine.types import FetchReport, RetrievedMessage
from tests.support.hostilepop import HostilePOP
from tests.support.mail import make_message
from tests.support.sqlite_store import SqliteStore


def _server(n: int = 6) -> tuple[HostilePOP, list[bytes]]:
    raws = [make_message(i, body_size=900) for i in range(n)]
    return HostilePOP([(b"u%d" % i, r) for i, r in enumerate(raws)]), raws


def test_a_cut_mid_message_keeps_the_complete_ones_and_names_the_one_in_flight(
        tmp_path: Path) -> None:
    srv, raws = _server()
    with srv:
        store = SqliteStore(str(tmp_path / "s.sqlite"))
        srv.quirks.cut_in_message = {4: 300}
        report = FetchReport()
        with pytest.raises(ConnectionFailed):
            fetch(srv.server_spec(), srv.creds(), RetrievalPolicy(commit_every=256), store,
                  store, net=srv.net_policy(), report=report)
        assert sorted(store.raw_messages()) == sorted(raws[:3])  # one group, still kept
        assert report.in_flight == "u3" and report.committed_on_failure == 3
        assert report.in_flight_size == len(raws[3])
        srv.quirks.cut_in_message = {}
        asked = len(srv.retrieved)
        again = fetch(srv.server_spec(), srv.creds(),
                      RetrievalPolicy(delete=DeletePolicy.DELETE), store, store,
                      net=srv.net_policy())
        assert again.stored == 3 and srv.retrieved[asked:] == [4, 5, 6]  # only what is left
        assert sorted(store.raw_messages()) == sorted(raws) and srv.messages == []


def test_the_session_deadline_keeps_what_arrived_complete(tmp_path: Path) -> None:
    srv, raws = _server(8)
    with srv:
        store = SqliteStore(str(tmp_path / "s.sqlite"))
        srv.quirks.trickle_delay = 0.05  # about 0.9 s a message: the deadline hits mid-way
        report = FetchReport()
        with pytest.raises(ConnectionTimeout):
            fetch(srv.server_spec(), srv.creds(), RetrievalPolicy(), store, store,
                  net=srv.net_policy(session_timeout=3.0), report=report)
        kept = store.raw_messages()
        assert 1 <= len(kept) < len(raws)
        assert kept == raws[:len(kept)]  # complete and exact, in order
        assert report.in_flight == f"u{len(kept)}"


def test_a_stream_that_lost_step_rolls_back(tmp_path: Path) -> None:
    srv, _raws = _server()
    with srv:
        store = SqliteStore(str(tmp_path / "s.sqlite"))
        srv.quirks.extra_line_after = {3: b"junk\r\n"}  # every later reply one line late
        report = FetchReport()
        with pytest.raises(ProtocolError):
            fetch(srv.server_spec(), srv.creds(), RetrievalPolicy(), store, store,
                  net=srv.net_policy(), report=report)
        assert store.raw_messages() == [] and report.in_flight is None


class _FailingSink(SqliteStore):
    """A store whose fourth add fails (a disk error, a refused quota)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.adds = 0

    def add(self, message: RetrievedMessage) -> None:
        if self.adds == 3:
            raise ConnectionFailed("not really: the sink's own failure")
        self.adds += 1
        super().add(message)


def test_a_sink_failure_rolls_back_even_when_it_looks_like_the_network(
        tmp_path: Path) -> None:
    srv, _raws = _server()
    with srv:
        store = _FailingSink(str(tmp_path / "s.sqlite"))
        report = FetchReport()
        with pytest.raises(ConnectionFailed):
            fetch(srv.server_spec(), srv.creds(), RetrievalPolicy(), store, store,
                  net=srv.net_policy(), report=report)
        assert store.raw_messages() == [] and store.rollbacks == 1
        assert report.in_flight is None and report.committed_on_failure == 0
