"""Fixtures for the sending tests: one set of real SMTP servers (aiosmtpd) per session."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from flask_popaccounts import get_state
from flask_popaccounts.engine.types import NetPolicy, Security
from tests.support.dnsserver import DNSServer
from tests.support.dovecot import Dovecot
from tests.support.smtpd import SMTPServers
from tests.web.conftest import make_example

_n = itertools.count(1)


@pytest.fixture(scope="session")
def smtpd(dovecot: Dovecot) -> Iterator[SMTPServers]:
    """The SMTP servers, with certificates from the Dovecot test CA (one CA file for both)."""
    servers = SMTPServers(ca=dovecot.ca)
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="session")
def dns_server() -> Iterator[DNSServer]:
    """The resolver every sending app asks for DMARC policies (nothing leaves the machine)."""
    server = DNSServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def smtp_user(smtpd: SMTPServers) -> tuple[str, str]:
    """A fresh SMTP login allowed to send as ``<login>@example.com`` only."""
    n = next(_n)
    login, password = f"sender{n}@example.com", f"smtp-secret-{n}"
    smtpd.add_user(login, password, senders={login})
    return login, password


@pytest.fixture
def smtp_net(smtpd: SMTPServers) -> NetPolicy:
    return NetPolicy(
        allow_private=True,
        allowed_ports=frozenset({smtpd.submission_port, smtpd.smtps_port, smtpd.untrusted_port,
                                 smtpd.no_tls_port, smtpd.relay_port}),
        ca_file=smtpd.ca_file, connect_timeout=5, read_timeout=10,
    )


@pytest.fixture
def send_app(tmp_path: Path, dovecot: Dovecot, smtpd: SMTPServers,
             dns_server: DNSServer) -> Iterator[Flask]:
    """The example webmail able to reach Dovecot, the SMTP servers and the system relay."""
    app = make_example(
        tmp_path,
        POPACCOUNTS_ALLOW_PRIVATE_HOSTS=True,
        POPACCOUNTS_CA_FILE=dovecot.ca_file,
        POPACCOUNTS_ALLOWED_POP3_PORTS=(110, 995, dovecot.pop3_port, dovecot.pop3s_port),
        POPACCOUNTS_ALLOWED_SMTP_PORTS=(465, 587, smtpd.submission_port, smtpd.smtps_port,
                                        smtpd.untrusted_port, smtpd.no_tls_port),
        POPACCOUNTS_CONNECT_TIMEOUT=5,
        POPACCOUNTS_READ_TIMEOUT=20,
        POPACCOUNTS_SYSTEM_SMTP_HOST="127.0.0.1",
        POPACCOUNTS_SYSTEM_SMTP_PORT=smtpd.relay_port,
        POPACCOUNTS_SYSTEM_SMTP_SECURITY="plain",
        POPACCOUNTS_SYSTEM_SMTP_FROM="Example Webmail <no-reply@webmail.example>",
        POPACCOUNTS_SITE_NAME="Example Webmail",
        POPACCOUNTS_DNS_NAMESERVERS=[dns_server.nameserver],
    )
    yield app
    with app.app_context():
        get_state(app).engine.dispose()
        from example_app import db

        db.engine.dispose()


def owner_id(app: Flask, username: str = "alice") -> str:
    from example_app import User, db

    with app.app_context():
        return str(db.session.scalar(db.select(User.id).where(User.username == username)))


def make_account(app: Flask, email: str, pop_username: str, password: str, *,
                 user: str = "alice", send_from: str = "", reply_to: str = "") -> int:
    """An account saved directly (its incoming test is proven elsewhere)."""
    from flask_popaccounts.services.accounts import AccountInput, create_account

    with app.test_request_context():
        session = get_state(app).session_factory()
        try:
            account = create_account(app, session, owner_id(app, user), AccountInput(
                email=email, name=f"Box {email.split('@')[0]}", send_from=send_from or email,
                reply_to=reply_to, is_default=False, provider="other", pop_host="127.0.0.1",
                pop_port=995, pop_security=Security.SSL, pop_username=pop_username,
                password=password))
            return int(account.id)
        finally:
            session.close()
