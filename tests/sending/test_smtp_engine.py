"""engine/smtp.py against real aiosmtpd servers: every named error produced for real."""

from __future__ import annotations

from dataclasses import replace

import pytest

from flask_popaccounts.engine import addresses, message, smtp
from flask_popaccounts.engine.errors import (
    CertificateInvalid,
    ConnectionFailed,
    HeaderInjection,
    InvalidAddress,
    PortNotAllowed,
    RecipientRefused,
    SendingNotAllowed,
    SMTPAuthFailed,
    SMTPStartTLSUnavailable,
    TokenRejected,
)
from flask_popaccounts.engine.types import AuthMethod, Credentials, NetPolicy, Security, ServerSpec
from tests.support.dovecot import free_port
from tests.support.smtpd import SMTPServers


def pw(secret: str) -> Credentials:
    return Credentials(AuthMethod.PASSWORD, secret)


def spec(port: int, security: Security, user: str = "") -> ServerSpec:
    return ServerSpec(host="127.0.0.1", port=port, security=security, username=user)


def test_starttls_and_implicit_tls_login(smtpd: SMTPServers, smtp_net: NetPolicy,
                                         smtp_user: tuple[str, str]) -> None:
    user, secret = smtp_user
    feats = smtp.check_smtp(spec(smtpd.submission_port, Security.STARTTLS, user), pw(secret),
                            net=smtp_net, sender=user)
    assert "AUTH" in feats
    smtp.check_smtp(spec(smtpd.smtps_port, Security.SSL, user), pw(secret), net=smtp_net,
                    sender=user)


def test_login_mechanism_and_long_password_two_step(smtpd: SMTPServers, smtp_net: NetPolicy
                                                    ) -> None:
    long_pw = "p" * 600  # initial response would be too long: two-step AUTH PLAIN
    smtpd.add_user("longpw@example.com", long_pw)
    client = smtp.SMTPClient.open(spec(smtpd.smtps_port, Security.SSL), smtp_net)
    try:
        assert client.authenticate("longpw@example.com", pw(long_pw)) == "PLAIN"
    finally:
        client.quit_quietly()
    client = smtp.SMTPClient.open(spec(smtpd.smtps_port, Security.SSL), smtp_net)
    try:
        client.esmtp_features["auth"] = "LOGIN"  # pretend the server offered LOGIN only
        assert client.authenticate("longpw@example.com", pw(long_pw)) == "LOGIN"
    finally:
        client.quit_quietly()


def test_xoauth2_two_step(smtpd: SMTPServers, smtp_net: NetPolicy) -> None:
    smtpd.tokens["oauth@example.com"] = "good-token"
    client = smtp.SMTPClient.open(spec(smtpd.smtps_port, Security.SSL), smtp_net)
    try:
        client.esmtp_features["auth"] += " XOAUTH2"
        assert client.authenticate("oauth@example.com",
                                   Credentials(AuthMethod.XOAUTH2, "good-token")) == "XOAUTH2"
    finally:
        client.quit_quietly()
    client = smtp.SMTPClient.open(spec(smtpd.smtps_port, Security.SSL), smtp_net)
    try:
        client.esmtp_features["auth"] += " XOAUTH2"
        with pytest.raises(TokenRejected):
            client.authenticate("oauth@example.com", Credentials(AuthMethod.XOAUTH2, "revoked"))
    finally:
        client.close()


def test_connection_failed_on_a_closed_port(smtp_net: NetPolicy) -> None:
    port = free_port()
    net = NetPolicy(allow_private=True, allowed_ports=frozenset({port}), connect_timeout=3)
    with pytest.raises(ConnectionFailed) as info:
        smtp.check_smtp(spec(port, Security.SSL, "x"), pw("y"), net=net)
    assert info.value.code == "connection_failed"


def test_wrong_password(smtpd: SMTPServers, smtp_net: NetPolicy,
                        smtp_user: tuple[str, str]) -> None:
    user, _secret = smtp_user
    for port, sec in ((smtpd.submission_port, Security.STARTTLS),
                      (smtpd.smtps_port, Security.SSL)):
        with pytest.raises(SMTPAuthFailed) as info:
            smtp.check_smtp(spec(port, sec, user), pw("wrong"), net=smtp_net)
        assert info.value.code == "smtp_auth_failed" and info.value.needs_user


def test_untrusted_certificate(smtpd: SMTPServers, smtp_net: NetPolicy,
                               smtp_user: tuple[str, str]) -> None:
    user, secret = smtp_user
    with pytest.raises(CertificateInvalid):
        smtp.check_smtp(spec(smtpd.untrusted_port, Security.SSL, user), pw(secret), net=smtp_net)
    assert not smtpd.received(port=smtpd.untrusted_port)


def test_untrusted_certificate_after_starttls_speaks_of_starttls(
        smtpd: SMTPServers, smtp_net: NetPolicy, smtp_user: tuple[str, str]) -> None:
    user, secret = smtp_user
    untrusting = replace(smtp_net, ca_file=None)  # the test CA is unknown here
    before = len(smtpd.received(port=smtpd.submission_port))
    with pytest.raises(CertificateInvalid) as info:
        smtp.check_smtp(spec(smtpd.submission_port, Security.STARTTLS, user), pw(secret),
                        net=untrusting)
    assert info.value.help == CertificateInvalid.HELP_STARTTLS
    assert "995" not in info.value.help and "465" not in info.value.help
    assert len(smtpd.received(port=smtpd.submission_port)) == before


def test_starttls_not_offered(smtpd: SMTPServers, smtp_net: NetPolicy,
                              smtp_user: tuple[str, str]) -> None:
    user, secret = smtp_user
    with pytest.raises(SMTPStartTLSUnavailable) as info:
        smtp.check_smtp(spec(smtpd.no_tls_port, Security.STARTTLS, user), pw(secret),
                        net=smtp_net)
    assert info.value.code == "smtp_tls_unavailable"


def test_sending_not_allowed_for_another_address(smtpd: SMTPServers, smtp_net: NetPolicy,
                                                 smtp_user: tuple[str, str]) -> None:
    user, secret = smtp_user
    with pytest.raises(SendingNotAllowed) as info:
        smtp.check_smtp(spec(smtpd.submission_port, Security.STARTTLS, user), pw(secret),
                        net=smtp_net, sender="someone.else@example.com")
    assert info.value.code == "sending_not_allowed"


def test_no_auth_offered_is_sending_not_allowed(smtpd: SMTPServers, smtp_net: NetPolicy) -> None:
    # the relay offers no AUTH at all
    with pytest.raises(SendingNotAllowed):
        smtp.check_smtp(ServerSpec("127.0.0.1", smtpd.relay_port, Security.PLAIN, "u"),
                        pw("p"), net=NetPolicy(allow_private=True, allow_plaintext=True,
                                               allowed_ports=frozenset({smtpd.relay_port})))


def test_port_policy_and_injection_refused_before_connecting(smtp_net: NetPolicy) -> None:
    with pytest.raises(PortNotAllowed):
        smtp.check_smtp(spec(25, Security.STARTTLS, "u"), pw("p"), net=smtp_net)
    with pytest.raises(Exception) as info:
        smtp.check_smtp(spec(465, Security.SSL, "u\r\nRCPT TO:<x@y.z>"), pw("p"),
                        net=NetPolicy(allow_private=True, allowed_ports=frozenset({465})))
    assert getattr(info.value, "code", "") == "invalid_input"


def test_send_bytes_and_recipient_refusal(smtpd: SMTPServers, smtp_net: NetPolicy,
                                          smtp_user: tuple[str, str]) -> None:
    user, secret = smtp_user
    msg = message.build_message(from_=addresses.parse_address(user), to=addresses.parse_addresses(
        "Zoë Ünïcode <zoe@example.org>, bob@example.net"), subject="Grüße · hello",
        body="Hällo\n.\nA line with a dot above.\n")
    refused = smtp.send(spec(smtpd.smtps_port, Security.SSL, user), pw(secret), net=smtp_net,
                        mail_from=user, rcpt_to=["zoe@example.org", "bob@example.net"],
                        data=message.message_bytes(msg))
    assert refused == {}
    got = smtpd.received(rcpt="zoe@example.org")[-1]
    assert got.login == user and got.mail_from == user
    raw = got.data
    assert b"=?utf-8?" in raw.lower() and "Grüße".encode() not in raw.split(b"\r\n\r\n")[0]
    parsed = got.message
    assert parsed["Subject"] == "Grüße · hello"
    assert parsed["To"].addresses[0].display_name == "Zoë Ünïcode"
    assert parsed["Date"] and parsed["Message-ID"].endswith("@example.com>")
    assert parsed.get_content().splitlines()[1] == "."


@pytest.mark.parametrize("value", [
    "plain", "a@b", "a b@example.com", "\"two words\"@example.com", "a@example.com\r\nBcc: x@y.z",
    "a@-bad-.com", "group: a@example.com;", "a@example.com, nonsense",
])
def test_strict_address_parsing(value: str) -> None:
    with pytest.raises((InvalidAddress, HeaderInjection)):
        addresses.parse_addresses(value)


def test_header_injection_in_subject_is_refused() -> None:
    with pytest.raises(HeaderInjection):
        message.build_message(from_=addresses.parse_address("a@example.com"),
                           to=[addresses.parse_address("b@example.com")],
                           subject="hi\r\nBcc: victim@example.org", body="x")


def test_recipients_refused_all(smtp_net: NetPolicy) -> None:
    assert issubclass(RecipientRefused, SendingNotAllowed)
