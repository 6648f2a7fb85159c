"""SMTP XOAUTH2 with the same tokens (Office 365's smtp.office365.com:587 STARTTLS): an
aiosmtpd submission server whose XOAUTH2 authenticator asks the test authorization
server's introspection endpoint about each token, as Dovecot's oauth2 passdb does."""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import requests
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from flask import Flask

from flask_popaccounts import get_state
from flask_popaccounts.engine import smtp
from flask_popaccounts.engine.errors import TokenRejected
from flask_popaccounts.engine.types import AuthMethod, Credentials, NetPolicy, Security, ServerSpec
from flask_popaccounts.services import oauth
from flask_popaccounts.services.credentials import credentials_for
from flask_popaccounts.storage.models import Account
from tests.support.authserver import AuthServer
from tests.support.clock import FakeClock, use_clock
from tests.support.dovecot import free_port
from tests.web.conftest import login

from .conftest import PREFIX, MsUser
from .flow import add_form, sign_in


@dataclass
class Received:
    login: str
    mail_from: str
    data: bytes


@dataclass
class IntrospectingHandler:
    """XOAUTH2 (two-step) checked at the authorization server; keeps what it accepts."""

    authsrv: AuthServer
    received: list[Received] = field(default_factory=list)
    challenges: int = 0

    def _active_user(self, token: str) -> str | None:
        rs = self.authsrv.rs_client
        resp = requests.post(self.authsrv.introspect_url, data={"token": token},
                             auth=(rs.client_id, rs.client_secret), timeout=10)
        body = resp.json()
        return str(body["username"]) if body.get("active") else None

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        blob = await server.challenge_auth("", encode_to_b64=False)
        if not isinstance(blob, bytes):
            return AuthResult(success=False, handled=False)
        m = re.match(r"^user=([^\x01]*)\x01auth=Bearer ([^\x01]*)\x01\x01$",
                     blob.decode("utf-8", "replace"))
        if m:
            loop = asyncio.get_running_loop()
            user = await loop.run_in_executor(None, self._active_user, m.group(2))
            if user is not None and user.lower() == m.group(1).lower():
                return AuthResult(success=True,
                                  auth_data=LoginPassword(m.group(1).encode(), b""))
        # Google/Microsoft style: a base64 JSON error challenge, then the final 535.
        self.challenges += 1
        err = base64.b64encode(b'{"status":"401","schemes":"bearer"}').decode()
        await server.push(f"334 {err}")
        await server._reader.readline()  # the client's empty line ends the exchange
        return AuthResult(success=False, handled=False)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        login = session.auth_data.login.decode() if isinstance(session.auth_data,
                                                               LoginPassword) else ""
        self.received.append(Received(login, str(envelope.mail_from), bytes(data)))
        return "250 Message accepted"


@dataclass
class Submission:
    handler: IntrospectingHandler
    port: int
    ca_file: str


@pytest.fixture(scope="module")
def submission(authsrv: AuthServer, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Submission]:
    ca = trustme.CA()
    ca_file = str(tmp_path_factory.mktemp("smtp") / "ca.pem")
    ca.cert_pem.write_to_path(ca_file)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    handler = IntrospectingHandler(authsrv)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, tls_context=ctx,
                            require_starttls=True, auth_required=True,
                            server_hostname="localhost")
    controller.start()
    try:
        yield Submission(handler, port, ca_file)
    finally:
        controller.stop()


def net_for(sub: Submission) -> NetPolicy:
    return NetPolicy(allow_private=True, allowed_ports=frozenset({sub.port}),
                     ca_file=sub.ca_file, connect_timeout=5, read_timeout=20)


def message(frm: str, subject: str) -> bytes:
    return (f"From: {frm}\r\nTo: friend@example.org\r\nSubject: {subject}\r\n"
            f"Date: Tue, 01 Jul 2025 09:00:00 +0000\r\n\r\nSent with XOAUTH2.\r\n").encode()


def test_send_with_a_refreshed_token_over_xoauth2(
        make_oauth_app: Callable[..., Flask], authsrv: AuthServer, submission: Submission,
        ms_user: MsUser, clock: FakeClock) -> None:
    app: Flask = use_clock(make_oauth_app(POPACCOUNTS_OAUTH_REFRESH_MARGIN_SECONDS=0), clock)
    client = login(app.test_client(), "alice")
    resp = sign_in(client, authsrv, f"{PREFIX}/add/pop3/oauth/office365/start",
                   add_form(ms_user), ms_user)
    account_id = int(resp.headers["Location"].split("/")[-2])
    with get_state(app).session_factory() as s:
        account = s.get(Account, account_id)
        assert account is not None
        stale = credentials_for(app, account).secret  # still fresh: no refresh yet
    clock.advance(authsrv.access_token_lifetime + 1)  # expired: sending must refresh first
    assert authsrv.valid_access_token(stale) is None  # dead at the provider too

    with get_state(app).session_factory() as s:
        account = s.get(Account, account_id)
        assert account is not None
        creds = credentials_for(app, account)  # what services.sending uses for "same as incoming"
    assert creds.method is AuthMethod.XOAUTH2 and creds.secret != stale
    assert authsrv.valid_access_token(creds.secret) is not None

    provider = oauth.get_provider(app, "office365")
    assert (provider.smtp_host, provider.smtp_port, provider.smtp_security) == (
        "smtp.office365.com", 587, "starttls")  # the preset; the test server stands in
    server = ServerSpec(host="127.0.0.1", port=submission.port, security=Security.STARTTLS,
                        username=ms_user.email)
    smtp.send(server, creds, net=net_for(submission), mail_from=ms_user.email,
              rcpt_to=["friend@example.org"], data=message(ms_user.email, "XOAUTH2 send"))
    [got] = [r for r in submission.handler.received if r.login == ms_user.email]
    assert got.mail_from == ms_user.email and b"Subject: XOAUTH2 send" in got.data


def test_smtp_refuses_a_bad_token_with_a_challenge(submission: Submission,
                                                    ms_user: MsUser) -> None:
    server = ServerSpec(host="127.0.0.1", port=submission.port, security=Security.STARTTLS,
                        username=ms_user.email)
    before = submission.handler.challenges
    with pytest.raises(TokenRejected):
        smtp.check_smtp(server, Credentials(AuthMethod.XOAUTH2, "forged-token"),
                        net=net_for(submission))
    assert submission.handler.challenges == before + 1
