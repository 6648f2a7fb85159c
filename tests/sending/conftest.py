"""Fixtures for the sending tests: one set of real SMTP servers (aiosmtpd) per session."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from flask_popaccounts.engine.types import NetPolicy
from tests.support.dovecot import Dovecot
from tests.support.smtpd import SMTPServers

_n = itertools.count(1)


@pytest.fixture(scope="session")
def smtpd(dovecot: Dovecot) -> Iterator[SMTPServers]:
    """The SMTP servers, with certificates from the Dovecot test CA (one CA file for both)."""
    servers = SMTPServers(ca=dovecot.ca)
    try:
        yield servers
    finally:
        servers.stop()


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
