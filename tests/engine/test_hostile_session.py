"""POP3 sessions against servers that misbehave (issue 11, items 1, 5, 6, 8, 9, 10).

Each test runs the real fetch against :class:`~tests.support.hostilepop.HostilePOP`
into the built-in SQL store's SQLite schema (tests/support/sqlite_store.py) and checks
what a user would: the bytes stored, what is left on the server, which commands the
server received, and the words the account card shows (the error's title and help).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flask_popaccounts.engine import DeletePolicy, RetrievalPolicy, check_login, fetch
from flask_popaccounts.engine import errors as E
from flask_popaccounts.engine.types import (
    AuthMethod,
    Credentials,
    FetchReport,
    NetPolicy,
    Security,
    ServerSpec,
)
from tests.support.dovecot import BAD_CERT_HOSTS, Dovecot
from tests.support.hostilepop import HostilePOP
from tests.support.mail import make_message
from tests.support.sqlite_store import SqliteStore

#: what no error after the server answered may tell the user
NOT_REACHABLE = "cannot be reached at that host name and port"


def _store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(str(tmp_path / "s.sqlite"))


def _fetch(srv: HostilePOP, store: SqliteStore, *, net: dict[str, object] | None = None,
           **policy: object) -> FetchReport:
    return fetch(srv.server_spec(), srv.creds(), RetrievalPolicy(**policy),  # type: ignore[arg-type]
                 store, store, net=srv.net_policy(**(net or {})))


def _words(exc: E.PopAccountsError) -> str:
    """What the account card shows for a failure: its title and help."""
    return f"{exc.title}. {exc.help}"


def _mailbox(n: int) -> list[tuple[bytes, bytes]]:
    return [(b"u%d" % i, make_message(i)) for i in range(n)]


# -- 1. framing --------------------------------------------------------------------------

@pytest.mark.parametrize("pipelining", [True, False])
@pytest.mark.parametrize("extra", [b"+OK\r\n", b"+OK 1234 octets\r\n", b"\r\n"])
def test_extra_line_after_a_message_stops_before_any_dele_and_stores_nothing_shifted(
        tmp_path: Path, pipelining: bool, extra: bytes) -> None:
    box = _mailbox(5)
    raws = [raw for _, raw in box]
    with HostilePOP(box) as srv:
        srv.quirks.pipelining = pipelining
        srv.quirks.extra_line_after = {2: extra}
        store = _store(tmp_path)
        with pytest.raises(E.ProtocolOutOfStep) as info:
            _fetch(srv, store, delete=DeletePolicy.DELETE, commit_every=1)
        stored = store.raw_messages()
        # What arrived before the stream lost step is stored as sent; nothing after it.
        assert stored in (raws[:1], raws[:2])
        assert not any(b"+OK" in raw for raw in stored)
        assert not any(cmd.startswith(b"DELE") for cmd in srv.commands)
        assert srv.messages == box  # nothing deleted on the server
        assert info.value.title == "The server's answers got out of step"
        assert "stopped before deleting anything" in info.value.help
        assert NOT_REACHABLE not in _words(info.value)

        srv.quirks.extra_line_after = {}  # the server fixed: everything, exactly once
        report = _fetch(srv, store, delete=DeletePolicy.DELETE)
        assert sorted(store.raw_messages()) == sorted(raws)
        assert report.deleted == 5 and srv.messages == []


def test_a_message_shifted_by_one_answer_is_never_stored_under_another_uidl(
        tmp_path: Path) -> None:
    """A stray "-ERR" line makes message 3's answer read as message 4's: caught by size."""
    box = [(b"u%d" % i, make_message(i, body_size=200 + 3000 * i)) for i in range(5)]
    with HostilePOP(box) as srv:
        srv.quirks.extra_line_after = {2: b"-ERR stray\r\n"}
        store = _store(tmp_path)
        with pytest.raises(E.ProtocolOutOfStep):
            _fetch(srv, store, delete=DeletePolicy.DELETE, commit_every=1)
        assert store.raw_messages() == [box[0][1], box[1][1]]
        assert set(store.entries()) == {"u0", "u1"}  # each body under its own UIDL
        assert not any(cmd.startswith(b"DELE") for cmd in srv.commands)


def test_estimated_list_sizes_are_no_reason_to_stop(tmp_path: Path) -> None:
    """LIST is only an estimate on some servers: the body is not held to it (only bounded)."""
    box = _mailbox(3)
    with HostilePOP(box) as srv:
        srv.quirks.retr_octets = False
        srv.quirks.list_size = {n: int(len(raw) * f) for n, (_, raw), f
                                in zip((1, 2, 3), box, (0.6, 1.4, 1.0), strict=True)}
        store = _store(tmp_path)
        assert _fetch(srv, store, delete=DeletePolicy.DELETE).stored == 3
        assert sorted(store.raw_messages()) == sorted(raw for _, raw in box)


# -- 5. line ends ------------------------------------------------------------------------

TRICKY = (b"From: a@example.com\r\nSubject: dots\r\n\r\n"
          b"line with a bare LF\n.\nafter a lone dot-LF line\r\n"
          b".leading dot\r\n"
          b"..two dots\r\n"
          b"a bare LF then dot-CRLF\n.\r\n"
          b".\nstarts with dot-LF\r\n"
          b"end\r\n")


@pytest.mark.parametrize("pipelining", [True, False])
def test_bare_lf_and_dots_inside_a_crlf_message_are_kept_byte_for_byte(
        tmp_path: Path, pipelining: bool) -> None:
    box = [(b"u0", TRICKY), (b"u1", make_message(1))]
    with HostilePOP(box) as srv:
        srv.quirks.pipelining = pipelining
        store = _store(tmp_path)
        report = _fetch(srv, store, delete=DeletePolicy.DELETE)
        assert report.stored == 2
        assert sorted(store.raw_messages()) == sorted(raw for _, raw in box)
        assert srv.messages == []


def test_a_server_that_does_not_stuff_dots_loses_no_byte(tmp_path: Path) -> None:
    raw = b"Subject: x\r\n\r\n.hidden line\r\n.\tand a tab\r\nend\r\n"
    with HostilePOP([(b"u0", raw)]) as srv:
        srv.quirks.no_stuffing = True
        store = _store(tmp_path)
        assert _fetch(srv, store).stored == 1
        assert store.raw_messages() == [raw]


@pytest.mark.parametrize("pipelining", [True, False])
def test_lf_only_server_works_with_lf_as_its_line_end(tmp_path: Path, pipelining: bool) -> None:
    box = [*_mailbox(3), (b"u-dots", b"Subject: d\r\n\r\n.a\r\n..b\r\nc\r\n")]
    with HostilePOP(box) as srv:
        srv.quirks.eol = b"\n"
        srv.quirks.pipelining = pipelining
        store = _store(tmp_path)
        report = _fetch(srv, store, delete=DeletePolicy.DELETE)
        assert report.stored == 4 and report.deleted == 4
        # Stored exactly as this server sends them: its lines end in LF.
        sent = [raw.replace(b"\r\n", b"\n") for _, raw in box]
        assert sorted(store.raw_messages()) == sorted(sent)
        assert srv.messages == []
        assert _fetch(srv, store).stored == 0


# -- 6. LOGIN-DELAY ----------------------------------------------------------------------

def test_login_delay_is_announced_and_its_refusal_is_temporary(tmp_path: Path) -> None:
    with HostilePOP(_mailbox(1)) as srv:
        srv.quirks.login_delay = 900
        store = _store(tmp_path)
        report = _fetch(srv, store)
        assert report.stored == 1 and report.login_delay == 900
        with pytest.raises(E.LoginDelay) as info:
            _fetch(srv, store)  # sooner than 900 s after the last login
        assert not isinstance(info.value, E.AuthenticationFailed)
        assert info.value.seconds == 900
        assert info.value.transient and not info.value.needs_user
        assert info.value.title == "The server asks us to wait between checks"
        assert srv.logins == 1


# -- 8. STLS injection -------------------------------------------------------------------

def test_data_injected_with_stls_ok_ends_the_session_before_any_credential(
        tmp_path: Path) -> None:
    with HostilePOP(_mailbox(1)) as srv:
        srv.quirks.stls_inject = b"+OK\r\n+OK logged in\r\n"
        with pytest.raises(E.TLSInjection) as info:
            _fetch(srv, _store(tmp_path))
        assert isinstance(info.value, E.TLSUnavailable)  # a TLS error
        assert not any(c.startswith((b"USER", b"PASS", b"AUTH")) for c in srv.commands)
        assert srv.logins == 0
        assert "We stopped without sending your password" in info.value.help


# -- 9. huge listings, lying sizes -------------------------------------------------------

@pytest.mark.parametrize("pipelining", [True, False])
def test_ten_million_messages_are_named_not_read(tmp_path: Path, pipelining: bool) -> None:
    with HostilePOP() as srv:
        srv.quirks.fake_count = 10_000_000
        srv.quirks.pipelining = pipelining
        store = _store(tmp_path)
        with pytest.raises(E.ListingTooLarge) as info:
            _fetch(srv, store)
        assert "the server lists 10,000,000 messages, more than this site fetches at once" \
            in str(info.value)
        assert info.value.title == "The server lists more messages than this site fetches at once"
        assert NOT_REACHABLE not in _words(info.value)
        assert store.raw_messages() == []


def test_a_listing_longer_than_the_cap_is_cut_at_the_cap(tmp_path: Path) -> None:
    with HostilePOP() as srv:
        srv.quirks.fake_count = 5000
        with pytest.raises(E.ListingTooLarge, match="lists 5,000 messages"):
            _fetch(srv, _store(tmp_path), net={"max_listing": 1000})


def test_a_body_far_beyond_its_list_size_is_refused_by_name(tmp_path: Path) -> None:
    big = make_message(1, body_size=3 * 1024 * 1024)
    with HostilePOP([(b"u0", make_message(0)), (b"u1", big)]) as srv:
        srv.quirks.list_size = {2: 100}  # LIST says 100 octets, the body is 3 MB
        store = _store(tmp_path)
        with pytest.raises(E.MessageSizeMismatch) as info:
            _fetch(srv, store, delete=DeletePolicy.DELETE, commit_every=1)
        assert info.value.title == "A message is much larger than the server said"
        assert NOT_REACHABLE not in _words(info.value)
        assert big not in store.raw_messages()
        assert not any(cmd.startswith(b"DELE") for cmd in srv.commands)


# -- 10. error words ---------------------------------------------------------------------

@pytest.mark.parametrize("quirk", [{"silent_after_greeting": True},
                                   {"silent_after_commands": 5}])
def test_a_server_that_stops_answering_says_so(tmp_path: Path, quirk: dict[str, object]) -> None:
    with HostilePOP(_mailbox(2)) as srv:
        for name, value in quirk.items():
            setattr(srv.quirks, name, value)
        with pytest.raises(E.ServerStoppedAnswering) as info:
            _fetch(srv, _store(tmp_path), net={"read_timeout": 0.5})
        assert info.value.title == "The server stopped answering"
        assert "answered, then stopped answering" in info.value.help
        assert NOT_REACHABLE not in _words(info.value)


def test_a_connection_cut_mid_message_says_the_server_closed_it(tmp_path: Path) -> None:
    with HostilePOP(_mailbox(2)) as srv:
        srv.quirks.cut_in_message = {2: 100}
        with pytest.raises(E.ConnectionLost) as info:
            _fetch(srv, _store(tmp_path))
        assert info.value.title == "The server closed the connection"
        assert NOT_REACHABLE not in _words(info.value)


def test_a_trickling_server_hits_the_session_deadline_in_plain_words(tmp_path: Path) -> None:
    with HostilePOP(_mailbox(1)) as srv:
        srv.quirks.trickle_delay, srv.quirks.trickle_chunk = 0.05, 8
        with pytest.raises(E.SessionTooLong) as info:
            _fetch(srv, _store(tmp_path), net={"session_timeout": 1.0})
        assert info.value.title == "The server sent mail too slowly"
        assert NOT_REACHABLE not in _words(info.value)


def test_an_untrusted_certificate_on_a_starttls_port_does_not_talk_about_995() -> None:
    with HostilePOP() as srv:
        with pytest.raises(E.CertificateInvalid) as info:
            check_login(srv.server_spec(), srv.creds(), net=srv.net_policy(ca_file=None))
        assert "995" not in _words(info.value)
        assert info.value.help == E.CertificateInvalid.HELP_STARTTLS
        assert not any(c.startswith((b"USER", b"PASS", b"AUTH")) for c in srv.commands)


# -- the line-end rule at every read boundary ---------------------------------------------

def _stuffed(raw: bytes, eol: bytes) -> bytes:
    lines = raw.split(b"\r\n")[:-1]
    return b"".join((b"." + ln if ln.startswith(b".") else ln) + eol for ln in lines)


@pytest.mark.parametrize("recv_size", [1, 2, 3, 5, 64 * 1024])
@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_bodies_split_at_any_byte_are_read_exactly(monkeypatch: pytest.MonkeyPatch,
                                                   recv_size: int, eol: bytes) -> None:
    import socket
    import tempfile

    from flask_popaccounts.engine import pop3wire
    from flask_popaccounts.engine.types import NetPolicy

    monkeypatch.setattr(pop3wire, "RECV_SIZE", recv_size)
    messages = [TRICKY, make_message(3), b"Subject: e\r\n\r\n.\r\n"] if eol == b"\r\n" else \
        [make_message(3), b"Subject: e\r\n\r\n.\r\n..\r\n"]
    ours, theirs = socket.socketpair()
    with ours, theirs:
        stream = b"+OK hi" + eol + b"".join(
            b"+OK" + eol + _stuffed(raw, eol) + b"." + eol for raw in messages)
        theirs.sendall(stream)
        theirs.shutdown(socket.SHUT_WR)
        wire = pop3wire.Wire(ours, NetPolicy(read_timeout=5))
        assert wire.readline() == b"+OK hi" and wire.eol == eol
        for raw in messages:
            assert wire.readline() == b"+OK"
            with tempfile.TemporaryFile() as out:
                n = wire.read_body_into(out)
                out.seek(0)
                expected = raw if eol == b"\r\n" else raw.replace(b"\r\n", b"\n")
                assert out.read() == expected and n == len(expected)
        wire.check_idle("the last body")  # every byte sent was accounted for


@pytest.mark.parametrize("case", ["expired", "self_signed", "untrusted", "wrong_host"])
def test_dovecot_starttls_certificate_errors_never_talk_about_995(
        dovecot: Dovecot, new_user: tuple[str, str], dovecot_net: NetPolicy, case: str) -> None:
    user, pw = new_user
    spec = ServerSpec(BAD_CERT_HOSTS[case], dovecot.pop3_port, Security.STARTTLS, user)
    with pytest.raises(E.CertificateInvalid) as info:
        check_login(spec, Credentials(AuthMethod.PASSWORD, pw), net=dovecot_net)
    assert info.value.title == "Invalid certificate"
    assert "995" not in _words(info.value) and NOT_REACHABLE not in _words(info.value)
    assert info.value.help == E.CertificateInvalid.HELP_STARTTLS  # the words of STARTTLS


def test_dovecot_ssl_certificate_errors_speak_of_ssl(
        dovecot: Dovecot, new_user: tuple[str, str], dovecot_net: NetPolicy) -> None:
    user, pw = new_user
    spec = ServerSpec(BAD_CERT_HOSTS["self_signed"], dovecot.pop3s_port, Security.SSL, user)
    with pytest.raises(E.CertificateInvalid) as info:
        check_login(spec, Credentials(AuthMethod.PASSWORD, pw), net=dovecot_net)
    # (a test port, not 995: SSL's words without naming a port)
    assert info.value.help == E.CertificateInvalid.help_for("ssl", dovecot.pop3s_port)
    assert "Self-signed certificates are refused" in info.value.help
