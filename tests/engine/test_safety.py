"""One rule for protocol lines and headers (engine/safety.py), seen from the user's side.

An encoded CR/LF (RFC 2047: ``=?utf-8?q?x=0D=0ABcc:_evil@example.com?=``) looks like
plain ASCII but decodes to a line break: wherever it would become part of a header we
write, it is refused before any message is built. A CR/LF in a username or any other
command never reaches the POP3 or SMTP wire.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from email.headerregistry import Address

import pytest

from flask_popaccounts.engine import addresses, autoreply, message, safety, smtp, sync
from flask_popaccounts.engine import errors as E
from flask_popaccounts.engine.pop3 import POP3Client
from flask_popaccounts.engine.safety import (
    check_fields,
    check_header_fields,
    decode_encoded_words,
    header_value_is_safe,
)
from flask_popaccounts.engine.types import AuthMethod, Credentials, NetPolicy, Security, ServerSpec
from tests.support.fakepop import FakeConn, FakePOP

ENCODED_CRLF = "=?utf-8?q?x=0D=0ABcc:_evil@example.com?="
SNEAKY = [
    ENCODED_CRLF,
    "=?utf-8?b?eA0KQmNjOiBldmlsQGV4YW1wbGUuY29t?=",  # the same, base64
    "Hello " + ENCODED_CRLF + " world",
    "=?utf-8?q?x =0D=0ABcc:_e@example.com?=",  # a space inside: the email package decodes it
    ENCODED_CRLF + " =?utf-8?b?!!!?=",  # a malformed word next to it must not hide it
    "=?utf-8*en?q?x=0D=0A?=",  # RFC 2231 language tag
    "=?no-such-charset?q?x=0D=0A?=",
    "=?utf-8?q?x=E2=80=A8y?=",  # U+2028 LINE SEPARATOR
    "=?utf-8?q?x=00y?=",
]
ME = Address("Me", addr_spec="me@example.com")
YOU = Address(addr_spec="you@example.org")


@pytest.mark.parametrize("value", SNEAKY)
def test_encoded_control_characters_are_seen(value: str) -> None:
    assert not header_value_is_safe(value)
    with pytest.raises(E.HeaderInjection):
        check_header_fields(subject=value)


@pytest.mark.parametrize("value", ["Re: your message", "=?utf-8?q?caf=C3=A9?=", "x =? y ?= z",
                                   "2 + 2 =? 4", "=?utf-8?b?!!!?=", "ünïcödé ١٢٣"])
def test_ordinary_and_encoded_text_passes(value: str) -> None:
    assert header_value_is_safe(value)
    check_header_fields(subject=value)


def test_decoding_is_word_by_word_and_never_raises() -> None:
    assert decode_encoded_words("a =?utf-8?q?caf=C3=A9?= b") == "a café b"
    assert decode_encoded_words("=?utf-8?b?!!!?= =?utf-8?q?=0D?=").endswith("\r")


@pytest.mark.parametrize("field", ["subject", "in_reply_to", "references"])
def test_build_message_refuses_an_encoded_crlf_in_a_header(field: str) -> None:
    values = {"subject": "Hi", "in_reply_to": "<a@example.com>", "references": "<a@example.com>"}
    values[field] = ENCODED_CRLF
    with pytest.raises(E.HeaderInjection) as info:
        message.build_message(from_=ME, to=[YOU], body="text", **values)
    assert field in info.value.detail


@pytest.mark.parametrize("role", ["from_", "to", "cc", "reply_to"])
def test_build_message_refuses_an_encoded_crlf_in_a_display_name(role: str) -> None:
    bad = Address(ENCODED_CRLF, addr_spec="ann@example.com")
    kwargs: dict = {"from_": ME, "to": [YOU]}
    kwargs[role] = [bad] if role in ("to", "cc") else bad
    with pytest.raises(E.HeaderInjection):
        message.build_message(subject="Hi", body="text", **kwargs)


def test_build_message_refuses_a_control_character_in_a_display_name() -> None:
    # An account's name goes straight into an Address: checked where it is written.
    with pytest.raises(E.HeaderInjection):
        message.build_message(from_=Address("Ann\x00", addr_spec="ann@example.com"), to=[YOU],
                           subject="Hi", body="text")


@pytest.mark.parametrize("value", [
    f"{ENCODED_CRLF} <ann@example.com>",
    f'"{ENCODED_CRLF}" <ann@example.com>',  # inside a quoted string: still decoded by readers
    f"bob@example.org, {ENCODED_CRLF} <ann@example.com>",
    "=?utf-8?q?=0D=0A?=@example.com",  # an encoded word as the local part
])
def test_the_address_parser_refuses_an_encoded_crlf(value: str) -> None:
    with pytest.raises(E.HeaderInjection):
        addresses.parse_addresses(value, field="to")


def test_the_address_parser_still_reads_encoded_display_names() -> None:
    (addr,) = addresses.parse_addresses("=?utf-8?q?Ann_Caf=C3=A9?= <ann@Example.COM>")
    assert (addr.display_name, addr.addr_spec) == ("Ann Café", "ann@example.com")


def test_the_vacation_reply_refuses_an_encoded_crlf_from_the_original() -> None:
    with pytest.raises(E.HeaderInjection):
        autoreply.build_reply(from_=ME, to="you@example.org", original_subject="Hi",
                              original_message_id=f"<{ENCODED_CRLF}@example.org>",
                              original_references="", subject="", body="Away")


def test_a_message_with_safe_headers_is_built() -> None:
    msg = message.build_message(from_=ME, to=[YOU], subject="=?utf-8?q?caf=C3=A9?=", body="text",
                             in_reply_to="<a@example.com>")
    data = message.message_bytes(msg)
    assert b"\r\nIn-Reply-To: <a@example.com>\r\n" in data
    assert b"Bcc" not in data


@pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\x00", "\x1b[0m", "a\x7f", "a\u2028b", "\x85",
                                   "a\tb"])
def test_protocol_values_refuse_every_control_character(value: str) -> None:
    with pytest.raises(E.InvalidInput):
        check_fields(username=value)


# -- nothing reaches the wire ---------------------------------------------------------------

EVIL_USER = "ann\r\nDELE 1"


def _pop_handler(conn: FakeConn) -> None:
    conn.send(b"+OK ready\r\n")
    while True:
        line = conn.readline()
        if line == b"CAPA":
            conn.send(b"+OK\r\nUSER\r\nUIDL\r\n.\r\n")
        elif line == b"QUIT":
            conn.send(b"+OK bye\r\n")
            return
        else:
            conn.send(b"+OK\r\n")


def _smtp_handler(conn: FakeConn) -> None:
    conn.send(b"220 fake ESMTP\r\n")
    while True:
        line = conn.readline().upper()
        if line.startswith(b"EHLO"):
            conn.send(b"250-fake\r\n250 AUTH PLAIN LOGIN\r\n")
        elif line.startswith(b"QUIT"):
            conn.send(b"221 bye\r\n")
            return
        else:
            conn.send(b"235 ok\r\n" if line.startswith(b"AUTH") else b"250 ok\r\n")


@pytest.fixture
def fake_pop() -> Iterator[FakePOP]:
    with FakePOP(_pop_handler) as server:
        yield server


@pytest.fixture
def fake_smtp() -> Iterator[FakePOP]:
    with FakePOP(_smtp_handler) as server:
        yield server


def _net(port: int) -> NetPolicy:
    return NetPolicy(allow_private=True, allow_plaintext=True, allowed_ports=frozenset({port}),
                     connect_timeout=5, read_timeout=5)


def _pw(secret: str = "pw") -> Credentials:  # noqa: S107 - a test server's
    return Credentials(AuthMethod.PASSWORD, secret)


def _quit_cleanly_then_received(server: FakePOP, port: int) -> list[list[bytes]]:
    """Every line each connection sent, once a last clean session has ended in QUIT.

    The server serves connections one after another, so when the clean session's QUIT
    has been answered, everything sent before it has been read.
    """
    client = POP3Client.open(ServerSpec("127.0.0.1", port, Security.PLAIN, "ann"), _net(port))
    client.quit()
    return [conn.received for conn in server.conns]


def test_a_crlf_in_the_pop3_username_refuses_before_connecting(fake_pop: FakePOP) -> None:
    port = fake_pop.port
    spec = ServerSpec("127.0.0.1", port, Security.PLAIN, EVIL_USER)
    with pytest.raises(E.InvalidInput):
        sync.check_login(spec, _pw(), net=_net(port))
    with pytest.raises(E.InvalidInput):
        POP3Client.open(spec, _net(port))
    with pytest.raises(E.InvalidInput):
        sync.check_login(ServerSpec("127.0.0.1", port, Security.PLAIN, "ann"), _pw("pw\r\nDELE 1"),
                         net=_net(port))
    assert _quit_cleanly_then_received(fake_pop, port) == [[b"CAPA", b"QUIT"]]


def test_a_crlf_in_the_pop3_username_never_reaches_the_wire(fake_pop: FakePOP) -> None:
    port = fake_pop.port
    client = POP3Client.open(ServerSpec("127.0.0.1", port, Security.PLAIN, "ann"), _net(port))
    for creds in (_pw(), Credentials(AuthMethod.XOAUTH2, "token")):
        with pytest.raises(E.InvalidInput):
            client.login(EVIL_USER, creds)
    client.quit()
    assert fake_pop.conns[0].received == [b"CAPA", b"QUIT"]


def _smtp_spec(port: int, username: str = "ann") -> ServerSpec:
    return ServerSpec("127.0.0.1", port, Security.PLAIN, username)


def test_a_crlf_in_the_smtp_username_or_host_name_refuses_before_connecting(
        fake_smtp: FakePOP) -> None:
    port = fake_smtp.port
    with pytest.raises(E.InvalidInput):
        smtp.check_smtp(_smtp_spec(port, EVIL_USER), _pw(), net=_net(port))
    with pytest.raises(E.InvalidInput):
        smtp.check_smtp(_smtp_spec(port), _pw(), net=_net(port),
                        local_hostname="me.example\r\nRCPT TO:<x@example.org>")
    assert smtp.check_smtp(_smtp_spec(port), None, net=_net(port)) >= {"AUTH"}
    assert len(fake_smtp.conns) == 1  # only the clean check connected


def test_a_crlf_in_the_smtp_login_or_envelope_never_reaches_the_wire(fake_smtp: FakePOP) -> None:
    port = fake_smtp.port
    client = smtp.SMTPClient.open(_smtp_spec(port), _net(port))
    with pytest.raises(E.InvalidInput):
        client.authenticate(EVIL_USER, _pw())
    with pytest.raises(E.InvalidInput):
        client.authenticate("ann", _pw("pw\r\nRSET"))
    with pytest.raises(E.HeaderInjection):
        client.send_bytes("ann@example.com\r\nRCPT TO:<x@example.org>", ["b@example.org"], b"x")
    with pytest.raises(E.HeaderInjection):
        client.send_bytes("ann@example.com", ["b@example.org\r\nDATA"], b"x")
    client.quit_quietly()
    assert [line.split()[0].upper() for line in fake_smtp.conns[0].received] == [b"EHLO", b"QUIT"]


def test_the_date_of_a_built_message_comes_from_the_injected_clock() -> None:
    msg = message.build_message(from_=ME, to=[YOU], subject="Hi", body="text",
                             clock=lambda: datetime(2026, 3, 1, 9, 30, tzinfo=UTC))
    assert msg["Date"] == "Sun, 01 Mar 2026 09:30:00 +0000"


@pytest.mark.parametrize("hostile", [
    "=?utf-8?q?Hi=0D=0ABcc:_x@evil.example?=",
    "=?utf-8?q?=3D=3Futf-8=3Fq=3FHi=3D0D=3D0ABcc:_x=3F=3D?=",  # hidden in a second encoding
    "Re: a\r\nBcc: x@evil.example",
    "=?utf-8?b?" + "PT91dGYtOD9xP0hpPTBEPTBBQmNjOl94Pz0=" + "?=",
])
def test_clean_header_text_makes_copied_text_safe(hostile: str) -> None:
    cleaned = safety.clean_header_text(hostile)
    assert safety.header_value_is_safe(cleaned)
    safety.check_header_fields(subject=cleaned)  # never raises
    assert "Bcc" in cleaned or "Hi" in cleaned  # the words stay readable
    assert safety.clean_header_text("Fwd: café =?utf-8?q?caf=C3=A9?=") == \
        "Fwd: café =?utf-8?q?caf=C3=A9?="  # safe text is left alone
