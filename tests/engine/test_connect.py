"""Connecting, TLS and authentication against a real Dovecot: every failure for real."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from flask_popaccounts.engine import (
    AuthMethod,
    Credentials,
    NetPolicy,
    POP3Client,
    RetrievalPolicy,
    Security,
    ServerSpec,
    check_login,
    fetch,
)
from flask_popaccounts.engine import errors as E
from tests.conftest import fresh_source_address
from tests.support.dovecot import BAD_CERT_HOSTS, NO_TLS_HOST, Dovecot, free_port
from tests.support.fakepop import FakeConn, FakePOP
from tests.support.sqlite_store import SqliteStore
from tests.support.waiting import wait_until


def _pw(secret: str) -> Credentials:
    return Credentials(AuthMethod.PASSWORD, secret)


def test_implicit_tls_login(dovecot: Dovecot, new_user: tuple[str, str],
                            dovecot_net: NetPolicy) -> None:
    user, pw = new_user
    caps = check_login(ServerSpec("localhost", dovecot.pop3s_port, Security.SSL, user), _pw(pw),
                       net=dovecot_net)
    assert {"UIDL", "PIPELINING", "RESP-CODES"} <= caps


def test_starttls_login_upgrades_and_asks_capa_again(
    dovecot: Dovecot, new_user: tuple[str, str], dovecot_net: NetPolicy
) -> None:
    user, pw = new_user
    spec = ServerSpec("localhost", dovecot.pop3_port, Security.STARTTLS, user)
    client = POP3Client.open(spec, dovecot_net)
    try:
        assert client.tls and isinstance(client.sock, ssl.SSLSocket)
        assert "STLS" not in client.capabilities  # the post-TLS CAPA, not the first one
        client.login(user, _pw(pw))
        assert client.stat() == (0, 0)
        client.quit()
    finally:
        client.close()


def test_plaintext_only_when_allowed(dovecot: Dovecot, new_user: tuple[str, str],
                                     dovecot_net: NetPolicy) -> None:
    user, pw = new_user
    spec = ServerSpec("127.0.0.1", dovecot.pop3_port, Security.PLAIN, user)
    with pytest.raises(E.PlaintextNotAllowed):
        check_login(spec, _pw(pw), net=dovecot_net)
    # Dovecot trusts a client whose address equals its own, so plaintext login works here.
    assert "UIDL" in check_login(spec, _pw(pw), net=replace(dovecot_net, allow_plaintext=True))


@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
def test_wrong_password_is_auth_failed(dovecot: Dovecot, new_user: tuple[str, str],
                                       dovecot_net: NetPolicy, security: Security) -> None:
    user, _ = new_user
    port = dovecot.pop3s_port if security is Security.SSL else dovecot.pop3_port
    net = replace(dovecot_net, source_address=fresh_source_address())
    with pytest.raises(E.AuthenticationFailed) as info:
        check_login(ServerSpec("localhost", port, security, user), _pw("wrong"), net=net)
    assert info.value.code == "auth_failed"
    assert "[AUTH]" in info.value.detail
    assert "POP access" in info.value.help  # R21/R24 hints


def test_password_change_at_provider(dovecot: Dovecot, new_user: tuple[str, str],
                                     dovecot_net: NetPolicy) -> None:
    user, pw = new_user
    spec = ServerSpec("localhost", dovecot.pop3s_port, Security.SSL, user)
    net = replace(dovecot_net, source_address=fresh_source_address())
    check_login(spec, _pw(pw), net=net)
    dovecot.set_password(user, pw + "-changed")
    with pytest.raises(E.AuthenticationFailed):
        check_login(spec, _pw(pw), net=net)
    net = replace(dovecot_net, source_address=fresh_source_address())
    check_login(spec, _pw(pw + "-changed"), net=net)


def test_closed_port_is_connection_failed(dovecot_net: NetPolicy) -> None:
    port = free_port()
    net = replace(dovecot_net, allowed_ports=frozenset({port}))
    with pytest.raises(E.ConnectionFailed) as info:
        check_login(ServerSpec("127.0.0.1", port, Security.SSL, "u"), _pw("p"), net=net)
    assert info.value.code == "connection_failed"


@pytest.mark.parametrize("case", sorted(BAD_CERT_HOSTS))
@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
def test_bad_certificates_are_refused(dovecot: Dovecot, new_user: tuple[str, str],
                                      dovecot_net: NetPolicy, case: str,
                                      security: Security) -> None:
    user, pw = new_user
    port = dovecot.pop3s_port if security is Security.SSL else dovecot.pop3_port
    spec = ServerSpec(BAD_CERT_HOSTS[case], port, security, user)
    with pytest.raises(E.CertificateInvalid) as info:
        check_login(spec, _pw(pw), net=dovecot_net)
    assert info.value.code == "certificate_invalid"
    expected = {"expired": "expired", "self_signed": "self-signed",
                "untrusted": "local issuer", "wrong_host": "mismatch"}[case]
    assert expected in info.value.detail


def test_system_trust_store_alone_refuses_the_test_ca(
    dovecot: Dovecot, new_user: tuple[str, str], dovecot_net: NetPolicy
) -> None:
    user, pw = new_user
    with pytest.raises(E.CertificateInvalid):
        check_login(ServerSpec("localhost", dovecot.pop3s_port, Security.SSL, user), _pw(pw),
                    net=replace(dovecot_net, ca_file=None))


def test_stls_not_offered_is_tls_unavailable_and_no_password_sent(
    dovecot: Dovecot, new_user: tuple[str, str], dovecot_net: NetPolicy
) -> None:
    user, pw = new_user
    with pytest.raises(E.TLSUnavailable) as info:
        check_login(ServerSpec(NO_TLS_HOST, dovecot.pop3_port, Security.STARTTLS, user),
                    _pw(pw), net=dovecot_net)
    assert info.value.code == "tls_unavailable"

    def disconnect_line() -> str:  # Dovecot logs it a moment after we hang up
        lines = [ln for ln in dovecot.log().splitlines() if f"lip={NO_TLS_HOST}" in ln]
        return lines[-1] if lines and "Disconnected" in lines[-1] else ""

    line = wait_until(disconnect_line, 10, "Dovecot to log the disconnect")
    assert "no auth attempts" in line


def test_implicit_tls_against_a_plain_port_is_refused(dovecot: Dovecot,
                                                      dovecot_net: NetPolicy) -> None:
    with pytest.raises((E.ProtocolError, E.ConnectionFailed)):
        check_login(ServerSpec("localhost", dovecot.pop3_port, Security.SSL, "u"), _pw("p"),
                    net=dovecot_net)


def test_address_not_allowed_without_allow_private(dovecot: Dovecot,
                                                   dovecot_net: NetPolicy) -> None:
    net = replace(dovecot_net, allow_private=False)
    for host in ("127.0.0.1", "localhost", "::1", "[::ffff:127.0.0.1]"):
        with pytest.raises(E.AddressNotAllowed):
            check_login(ServerSpec(host, dovecot.pop3s_port, Security.SSL, "u"), _pw("p"),
                        net=net)


def test_port_not_allowed(dovecot: Dovecot) -> None:
    net = NetPolicy(allow_private=True, ca_file=dovecot.ca_file)  # default: 110 and 995 only
    with pytest.raises(E.PortNotAllowed) as info:
        check_login(ServerSpec("localhost", dovecot.pop3s_port, Security.SSL, "u"), _pw("p"),
                    net=net)
    assert info.value.code == "port_not_allowed"


@pytest.mark.parametrize("field", ["host", "username", "secret"])
def test_control_characters_refused_before_connecting(dovecot: Dovecot, dovecot_net: NetPolicy,
                                                      field: str) -> None:
    values = {"host": "localhost", "username": "alice", "secret": "pw"}
    values[field] += "\r\nDELE 1"
    with FakePOP(lambda c: c.send(b"+OK hi\r\n")) as fake:
        net = replace(dovecot_net, allowed_ports=frozenset({fake.port}))
        with pytest.raises(E.InvalidInput):
            check_login(ServerSpec(values["host"], fake.port, Security.PLAIN, values["username"]),
                        _pw(values["secret"]), net=replace(net, allow_plaintext=True))
        assert fake.conns == []  # nothing was even connected


@pytest.mark.slow
def test_second_session_gets_mailbox_in_use(dovecot: Dovecot, new_user: tuple[str, str],
                                            dovecot_net: NetPolicy) -> None:
    user, pw = new_user
    spec = ServerSpec("localhost", dovecot.pop3s_port, Security.SSL, user)
    first = POP3Client.open(spec, dovecot_net)
    try:
        first.login(user, _pw(pw))
        with pytest.raises(E.MailboxInUse) as info:  # Dovecot waits ~11 s first
            check_login(spec, _pw(pw), net=dovecot_net)
        assert info.value.code == "in_use" and info.value.transient
    finally:
        first.quit()


# --- XOAUTH2 against Dovecot's oauth2 passdb and a local introspection endpoint -----------

class _Introspect(BaseHTTPRequestHandler):
    tokens: dict[str, str] = {}

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        token = parse_qs(body).get("token", [""])[0]
        user = self.tokens.get(token)
        data = {"active": True, "username": user} if user else {"active": False}
        out = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def oauth_dovecot() -> Iterator[Dovecot]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Introspect)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://client:secret@127.0.0.1:{httpd.server_address[1]}/introspect"
    dc = Dovecot(oauth2_introspection_url=url)
    try:
        dc.add_user("olive", "unused-password")
        _Introspect.tokens = {"good-token": "olive"}
        yield dc
    finally:
        dc.stop()
        httpd.shutdown()


def test_xoauth2_two_step(oauth_dovecot: Dovecot) -> None:
    dc = oauth_dovecot
    net = NetPolicy(allow_private=True, allowed_ports=frozenset({dc.pop3s_port}),
                    ca_file=dc.ca_file, read_timeout=20)
    spec = ServerSpec("localhost", dc.pop3s_port, Security.SSL, "olive")
    assert "UIDL" in check_login(spec, Credentials(AuthMethod.XOAUTH2, "good-token"), net=net)
    with pytest.raises(E.TokenRejected) as info:
        check_login(spec, Credentials(AuthMethod.XOAUTH2, "revoked-token"),
                    net=replace(net, source_address=fresh_source_address()))
    assert info.value.code == "token_rejected" and info.value.needs_user


# --- behaviours Dovecot cannot show, on a scripted server (in addition to the above) --------

def _greet_capa(conn: FakeConn, caps: bytes = b"USER\r\nUIDL\r\nSTLS\r\n") -> None:
    conn.send(b"+OK fake\r\n")
    assert conn.readline() == b"CAPA"
    conn.send(b"+OK\r\n" + caps + b".\r\n")


def _plain_net(port: int, dovecot: Dovecot) -> NetPolicy:
    return NetPolicy(allow_private=True, allowed_ports=frozenset({port}), allow_plaintext=True,
                     ca_file=dovecot.ca_file, connect_timeout=3, read_timeout=3)


def test_stls_refused_is_tls_unavailable(dovecot: Dovecot) -> None:
    def handler(conn: FakeConn) -> None:
        _greet_capa(conn)
        assert conn.readline() == b"STLS"
        conn.send(b"-ERR not today\r\n")
        conn.readline()

    with FakePOP(handler) as fake:
        with pytest.raises(E.TLSUnavailable):
            check_login(ServerSpec("127.0.0.1", fake.port, Security.STARTTLS, "u"), _pw("p"),
                        net=_plain_net(fake.port, dovecot))
        assert not any(line.startswith((b"USER", b"PASS")) for line in fake.conns[0].received)


def test_plaintext_injected_before_tls_ends_the_session_unauthenticated(
        dovecot: Dovecot) -> None:
    """CVE-2021-39272 pattern: answers queued with STLS's +OK end the session, named."""

    def handler(conn: FakeConn) -> None:
        _greet_capa(conn)
        assert conn.readline() == b"STLS"
        # The attack: extra plaintext answers queued before the handshake.
        conn.send(b"+OK begin TLS\r\n+OK\r\nUSER\r\n.\r\n+OK injected\r\n+OK injected\r\n")
        with pytest.raises(EOFError):
            conn.readline()  # the client hangs up instead of starting TLS

    with FakePOP(handler) as fake:
        with pytest.raises(E.TLSInjection) as info:
            check_login(ServerSpec("127.0.0.1", fake.port, Security.STARTTLS, "u"), _pw("p"),
                        net=_plain_net(fake.port, dovecot))
        assert info.value.title == "Unencrypted data was slipped in before encryption started"
        assert fake.conns[0].received == [b"CAPA", b"STLS"]  # no USER, PASS or AUTH


def test_server_without_uidl_is_refused(dovecot: Dovecot) -> None:
    def handler(conn: FakeConn) -> None:
        _greet_capa(conn, b"USER\r\n")
        for expect, answer in [(b"USER u", b"+OK\r\n"), (b"PASS p", b"+OK\r\n"),
                               (b"STAT", b"+OK 1 10\r\n"), (b"UIDL", b"-ERR no UIDL\r\n")]:
            assert conn.readline() == expect
            conn.send(answer)
        conn.readline()

    with FakePOP(handler) as fake:
        with pytest.raises(E.UIDLUnsupported):
            check_login(ServerSpec("127.0.0.1", fake.port, Security.PLAIN, "u"), _pw("p"),
                        net=_plain_net(fake.port, dovecot))


@pytest.mark.parametrize(("text", "cls"), [
    (b"-ERR [LOGIN-DELAY] wait", E.LoginDelay),
    (b"-ERR [SYS/TEMP] later", E.ServerUnavailable),
    (b"-ERR [SYS/PERM] gone", E.ServerRefused),
    (b"-ERR [IN-USE] busy", E.MailboxInUse),
    (b"-ERR just no", E.AuthenticationFailed),
])
def test_resp_codes_after_pass(dovecot: Dovecot, text: bytes,
                               cls: type[E.PopAccountsError]) -> None:
    def handler(conn: FakeConn) -> None:
        _greet_capa(conn, b"USER\r\nRESP-CODES\r\n")
        assert conn.readline() == b"USER u"
        conn.send(b"+OK\r\n")
        assert conn.readline() == b"PASS p"
        conn.send(text + b"\x1b[31m\r\n")
        conn.readline()

    with FakePOP(handler) as fake:
        with pytest.raises(cls) as info:
            check_login(ServerSpec("127.0.0.1", fake.port, Security.PLAIN, "u"), _pw("p"),
                        net=_plain_net(fake.port, dovecot))
    assert type(info.value) is cls
    assert "\x1b" not in info.value.detail  # server text is cleaned


def test_silent_server_times_out(dovecot: Dovecot) -> None:
    with FakePOP(lambda conn: conn.wait_closed()) as fake:
        net = replace(_plain_net(fake.port, dovecot), read_timeout=0.5)
        with pytest.raises(E.ConnectionTimeout) as info:
            check_login(ServerSpec("127.0.0.1", fake.port, Security.PLAIN, "u"), _pw("p"),
                        net=net)
        assert info.value.code == "timeout"


def test_silent_tls_server_times_out_in_handshake(dovecot: Dovecot) -> None:
    with FakePOP(lambda conn: conn.wait_closed()) as fake:
        net = replace(_plain_net(fake.port, dovecot), connect_timeout=0.5)
        with pytest.raises(E.ConnectionTimeout):
            check_login(ServerSpec("127.0.0.1", fake.port, Security.SSL, "u"), _pw("p"), net=net)


def _logged_in(conn: FakeConn, caps: bytes = b"USER\r\nUIDL\r\n") -> None:
    _greet_capa(conn, caps)
    assert conn.readline() == b"USER u"
    conn.send(b"+OK\r\n")
    assert conn.readline() == b"PASS p"
    conn.send(b"+OK\r\n")


def test_body_far_beyond_its_listed_size_is_cut_off(dovecot: Dovecot, tmp_path: Path) -> None:
    def handler(conn: FakeConn) -> None:
        _logged_in(conn)
        assert conn.readline() == b"STAT"  # asked first: a huge mailbox is named at once
        conn.send(b"+OK 1 100\r\n")
        assert conn.readline() == b"UIDL"
        conn.send(b"+OK\r\n1 aaa\r\n.\r\n")
        assert conn.readline() == b"LIST"
        conn.send(b"+OK\r\n1 100\r\n.\r\n")
        assert conn.readline() == b"RETR 1"
        conn.send(b"+OK\r\n")
        for _ in range(400):  # 400 x 10 KiB, never terminated
            conn.send(b"x" * 10238 + b"\r\n")
        conn.wait_closed()

    store = SqliteStore(str(tmp_path / "s.sqlite"))
    with FakePOP(handler) as fake:
        with pytest.raises(E.ProtocolError, match="listed size"):
            fetch(ServerSpec("127.0.0.1", fake.port, Security.PLAIN, "u"), _pw("p"),
                  RetrievalPolicy(), store, store, net=_plain_net(fake.port, dovecot))
    assert store.raw_messages() == []


def test_endless_listing_is_refused(dovecot: Dovecot) -> None:
    def handler(conn: FakeConn) -> None:
        _logged_in(conn)
        assert conn.readline() == b"STAT"
        conn.send(b"+OK 5 10\r\n")  # STAT says 5; the listing never ends
        assert conn.readline() == b"UIDL"
        conn.send(b"+OK\r\n" + b"".join(b"%d u%d\r\n" % (i, i) for i in range(1, 5000)))
        conn.wait_closed()

    with FakePOP(handler) as fake:
        with pytest.raises(E.ListingTooLarge, match="more than 1,000 messages"):
            check_login(ServerSpec("127.0.0.1", fake.port, Security.PLAIN, "u"), _pw("p"),
                        net=replace(_plain_net(fake.port, dovecot), max_listing=1000))


def test_sasl_plain_against_dovecot(dovecot: Dovecot, new_user: tuple[str, str],
                                    dovecot_net: NetPolicy) -> None:
    user, pw = new_user
    spec = ServerSpec("localhost", dovecot.pop3s_port, Security.SSL, user)
    for secret, ok in [(pw, True), ("wrong", False)]:
        net = replace(dovecot_net, source_address=fresh_source_address())
        client = POP3Client.open(spec, net)
        try:
            client.capabilities = client.capabilities - {"USER"}  # as if only SASL were offered
            assert "PLAIN" in client.sasl_mechanisms
            if ok:
                client.login(user, _pw(secret))
                assert client.stat() == (0, 0)
                client.quit()
            else:
                with pytest.raises(E.AuthenticationFailed):
                    client.login(user, _pw(secret))
        finally:
            client.close()
    assert "method=PLAIN" in dovecot.log()


def test_trickling_server_is_cut_off_at_the_session_deadline(dovecot: Dovecot,
                                                             tmp_path: Path) -> None:
    """Each byte arrives well within read_timeout, yet the session must end."""
    def handler(conn: FakeConn) -> None:
        _logged_in(conn)
        assert conn.readline() == b"STAT"  # asked first: a huge mailbox is named at once
        conn.send(b"+OK 1 100\r\n")
        assert conn.readline() == b"UIDL"
        conn.send(b"+OK\r\n1 aaa\r\n.\r\n")
        assert conn.readline() == b"LIST"
        conn.send(b"+OK\r\n1 100000\r\n.\r\n")
        conn.readline()
        conn.send(b"+OK\r\n")
        for _ in range(200):  # 10 s of one byte every 50 ms, never finished
            conn.send(b"x")
            time.sleep(0.05)

    store = SqliteStore(str(tmp_path / "s.sqlite"))
    with FakePOP(handler) as fake:
        net = replace(_plain_net(fake.port, dovecot), read_timeout=1, session_timeout=1.5)
        started = time.monotonic()
        with pytest.raises(E.ConnectionTimeout, match="too long"):
            fetch(ServerSpec("127.0.0.1", fake.port, Security.PLAIN, "u"), _pw("p"),
                  RetrievalPolicy(), store, store, net=net)
        assert time.monotonic() - started < 4
    assert store.raw_messages() == []


def test_idle_poll_costs_few_round_trips(dovecot: Dovecot, tmp_path: Path) -> None:
    """With PIPELINING, USER and PASS travel together; with nothing new, no LIST at all."""
    bursts: list[list[bytes]] = []
    body = b"Subject: hi\r\n\r\nhello\r\n"

    def handler(conn: FakeConn) -> None:
        _greet_capa(conn, b"USER\r\nUIDL\r\nPIPELINING\r\n")
        while True:
            burst = [conn.readline()]
            while b"\r\n" in conn.buf:  # what arrived in the same write
                burst.append(conn.readline())
            bursts.append(burst)
            for cmd in burst:
                if cmd.startswith((b"USER", b"PASS")):
                    conn.send(b"+OK\r\n")
                elif cmd == b"STAT":
                    conn.send(b"+OK 1 %d\r\n" % len(body))
                elif cmd == b"UIDL":
                    conn.send(b"+OK\r\n1 only\r\n.\r\n")
                elif cmd == b"LIST":
                    conn.send(b"+OK\r\n1 %d\r\n.\r\n" % len(body))
                elif cmd == b"RETR 1":
                    conn.send(b"+OK\r\n" + body + b".\r\n")
                elif cmd == b"QUIT":
                    conn.send(b"+OK bye\r\n")
                    return

    store = SqliteStore(str(tmp_path / "s.sqlite"))
    with FakePOP(handler) as fake:
        server = ServerSpec("127.0.0.1", fake.port, Security.PLAIN, "u")
        net = _plain_net(fake.port, dovecot)
        assert fetch(server, _pw("p"), RetrievalPolicy(), store, store, net=net).stored == 1
        assert bursts == [[b"USER u", b"PASS p"], [b"STAT", b"UIDL"], [b"LIST"], [b"RETR 1"],
                          [b"QUIT"]]

        bursts.clear()
        report = fetch(server, _pw("p"), RetrievalPolicy(), store, store, net=net)
        assert report.new == 0 and report.server_count == 1
        assert bursts == [[b"USER u", b"PASS p"], [b"STAT", b"UIDL"], [b"QUIT"]]
    assert store.raw_messages() == [body]
