"""An LMTP server whose answers a test chooses (aiosmtpd's LMTP), for what Dovecot won't do.

``FakeLMTP(ca)`` listens on 127.0.0.1 with STARTTLS (a certificate from the trustme CA
``ca``); ``auth={"login": "password"}`` requires AUTH PLAIN/LOGIN after TLS. Each
DATA gets the next reply in :attr:`replies` (default ``250 2.0.0 OK``), and every message
the server accepted is kept in :attr:`received` (its bytes after dot-unstuffing, as
the server saw them). aiosmtpd offers no CHUNKING: our client falls back to DATA.
"""

from __future__ import annotations

import ssl
import tempfile
import threading
from pathlib import Path

import trustme
from aiosmtpd import smtp as aiosmtpd_smtp
from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support.dovecot import free_port


class _Handler:
    def __init__(self, owner: FakeLMTP) -> None:
        self.owner = owner

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.owner.lock:
            reply = self.owner.replies.pop(0) if self.owner.replies else "250 2.0.0 OK"
            if reply.startswith("2"):
                data = envelope.original_content or b""
                self.owner.received.append((list(envelope.rcpt_tos), bytes(data)))
        return reply


class _LMTPController(Controller):
    def factory(self) -> SMTP:
        return LMTP(self.handler, **self.SMTP_kwargs)


# aiosmtpd 1.4 lets only EHLO (not LMTP's LHLO) come before a required STARTTLS.
aiosmtpd_smtp.ALLOWED_BEFORE_STARTTLS.add("LHLO")


class FakeLMTP:
    """See the module docstring; a context manager."""

    def __init__(self, ca: trustme.CA, *, auth: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.replies: list[str] = []
        self.received: list[tuple[list[str], bytes]] = []
        self.lock = threading.Lock()
        self._dir = tempfile.TemporaryDirectory()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        crt, key = Path(self._dir.name) / "c.pem", Path(self._dir.name) / "k.pem"
        cert.cert_chain_pems[0].write_to_path(str(crt))
        for extra in cert.cert_chain_pems[1:]:
            extra.write_to_path(str(crt), append=True)
        cert.private_key_pem.write_to_path(str(key))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(crt), str(key))
        users = auth or {}

        def check(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                  data: object) -> AuthResult:
            ok = isinstance(data, LoginPassword) and users.get(
                data.login.decode()) == data.password.decode()
            return AuthResult(success=ok)

        self._controller = _LMTPController(
            _Handler(self), hostname="127.0.0.1", port=self.port, tls_context=ctx,
            require_starttls=True, auth_required=bool(users), authenticator=check,
            auth_require_tls=True)
        self._controller.start()

    def close(self) -> None:
        self._controller.stop()
        self._dir.cleanup()

    def __enter__(self) -> FakeLMTP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
