"""Real SMTP servers for the sending tests (aiosmtpd, each in its own thread).

:class:`SMTPServers` starts, on 127.0.0.1:

- ``submission_port``: 587 style, STARTTLS required, AUTH required (PLAIN, LOGIN, and
  XOAUTH2 accepting tokens in ``tokens``), certificate from the given CA;
- ``smtps_port``: 465 style, implicit TLS, AUTH required;
- ``untrusted_port``: implicit TLS with a certificate from an unknown CA;
- ``no_tls_port``: offers no STARTTLS at all;
- ``relay_port``: the host's "system relay", plain, no AUTH: keeps every message so
  tests can read the confirmation codes (:meth:`SMTPServers.code_for`).

Every accepted message is kept in :attr:`Store.messages` with its envelope and the
login that sent it. ``users`` maps login -> password; ``senders`` optionally limits the
MAIL FROM addresses a login may use (the server refuses others with 553, which the
application reports as "sending not allowed").
"""

from __future__ import annotations

import base64
import re
import ssl
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support.dovecot import free_port


class _Controller(Controller):
    def factory(self) -> SMTP:
        # The 465-style servers require AUTH over TLS from the first byte; aiosmtpd
        # cannot tell and warns on every connection.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return super().factory()


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    login: str | None
    port: int

    @property
    def message(self) -> EmailMessage:
        msg = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Store:
    messages: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Handler:
    def __init__(self, store: Store, port: int, senders: dict[str, set[str]],
                 tokens: dict[str, str]) -> None:
        self.store = store
        self.port = port
        self.senders = senders
        self.tokens = tokens

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        login = _login(session)
        allowed = self.senders.get(login or "")
        if allowed is not None and address.lower() not in allowed:
            return "553 5.7.1 Sender address rejected: not owned by user"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        data = content.encode() if isinstance(content, str) else bytes(content)
        with self.store.lock:
            self.store.messages.append(Received(
                mail_from=str(envelope.mail_from), rcpt_tos=list(envelope.rcpt_tos),
                data=data,
                login=_login(session), port=self.port))
        return "250 Message accepted"

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        # Two-step only (what the client sends): "AUTH XOAUTH2", 334, base64 blob.
        blob = await server.challenge_auth("", encode_to_b64=False)
        if not isinstance(blob, bytes):
            return AuthResult(success=False, handled=False)
        text = blob.decode("utf-8", "replace")
        m = re.match(r"^user=([^\x01]*)\x01auth=Bearer ([^\x01]*)\x01\x01$", text)
        if m and self.tokens.get(m.group(1)) == m.group(2):
            return AuthResult(success=True, auth_data=LoginPassword(m.group(1).encode(), b""))
        err = base64.b64encode(b'{"status":"401","schemes":"bearer"}').decode()
        await server.push(f"334 {err}")
        await server._reader.readline()  # the client's empty line ends the exchange
        return AuthResult(success=False, handled=False)


def _login(session: Session) -> str | None:
    data = session.auth_data
    if isinstance(data, LoginPassword):
        return data.login.decode()
    return None


class SMTPServers:
    def __init__(self, ca: trustme.CA | None = None, root: Path | None = None) -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix="smtpd-test-"))
        self.ca = ca or trustme.CA()
        self.ca_file = str(self.root / "smtp-ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)
        self.users: dict[str, str] = {}
        self.senders: dict[str, set[str]] = {}
        self.tokens: dict[str, str] = {}
        self.store = Store()
        self.relay_store = Store()
        self._controllers: list[Controller] = []

        good = self._server_ctx(self.ca.issue_cert("localhost", "127.0.0.1"))
        bad = self._server_ctx(trustme.CA().issue_cert("localhost", "127.0.0.1"))

        self.submission_port = self._start(tls_context=good, require_starttls=True,
                                           auth_required=True)
        self.smtps_port = self._start(ssl_context=good, auth_required=True,
                                      auth_require_tls=False)
        self.untrusted_port = self._start(ssl_context=bad, auth_required=True,
                                          auth_require_tls=False)
        self.no_tls_port = self._start(auth_required=True)
        self.relay_port = self._start(store=self.relay_store)

    def _server_ctx(self, leaf: trustme.LeafCert) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(ctx)
        return ctx

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode()
            if login in self.users and self.users[login] == auth_data.password.decode():
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    def _start(self, *, store: Store | None = None, ssl_context: ssl.SSLContext | None = None,
               **kw: Any) -> int:
        port = free_port()
        handler = Handler(store or self.store, port, self.senders, self.tokens)
        controller = _Controller(handler, hostname="127.0.0.1", port=port,
                                ssl_context=ssl_context, authenticator=self._authenticate,
                                server_hostname="localhost", **kw)
        controller.start()
        self._controllers.append(controller)
        return port

    def stop(self) -> None:
        for c in self._controllers:
            c.stop()

    # -- helpers for tests ---------------------------------------------------------------
    def add_user(self, login: str, password: str, senders: set[str] | None = None) -> None:
        self.users[login] = password
        if senders is not None:
            self.senders[login] = {s.lower() for s in senders}

    def received(self, *, port: int | None = None, rcpt: str | None = None) -> list[Received]:
        with self.store.lock:
            out = list(self.store.messages)
        return [m for m in out if (port is None or m.port == port)
                and (rcpt is None or rcpt in m.rcpt_tos)]

    def relayed(self, rcpt: str | None = None) -> list[Received]:
        with self.relay_store.lock:
            out = list(self.relay_store.messages)
        return [m for m in out if rcpt is None or rcpt in m.rcpt_tos]

    def code_for(self, address: str) -> str:
        """The confirmation code in the newest message the relay took for ``address``."""
        mails = self.relayed(address)
        assert mails, f"no mail was relayed to {address}"
        body = mails[-1].message.get_body(("plain",))
        assert body is not None
        m = re.search(r"confirmation code is: (\d{6,})", body.get_content())
        assert m, body.get_content()
        return m.group(1)
