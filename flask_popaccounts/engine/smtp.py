"""SMTP: test an outgoing server and send a message through it.

The connection goes through :mod:`.net` (resolve once, refuse non-public addresses
unless allowed, allowed ports only, TLS verified against the host name the user gave),
then ``smtplib`` speaks the protocol over that socket. ``smtplib`` has traps we avoid on
purpose (see ``testing-with-real-servers.md``):

- ``SMTP_SSL``/``starttls()`` verify no certificate unless given a context: we never let
  smtplib do TLS at all; :func:`.net.wrap_tls` does it, verified.
- ``auth()`` does not call ``ehlo()`` and returns normally on a 503: we run EHLO ourselves,
  check its reply, and drive AUTH by hand, accepting only 235.
- Long initial responses must use the two-step form (RFC 4954): XOAUTH2 always does,
  PLAIN does when the line would be long.
- CR/LF in a username, password, address or our own host name would reach the wire:
  refused first, by :mod:`.safety`, like every command line we write.

Building the message is :mod:`.message`'s job and parsing addresses :mod:`.addresses`';
their public functions are importable from here too, where callers have always found
them.

Security modes: :attr:`Security.SSL` is implicit TLS (465); :attr:`Security.STARTTLS`
requires STARTTLS (587, or 25 when the host application allows that port) and fails with
:class:`SMTPStartTLSUnavailable` rather than continue in clear; :attr:`Security.PLAIN`
only when the policy allows plaintext (a host's local relay).
"""

from __future__ import annotations

import base64
import smtplib
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from . import net as netmod
from .addresses import check_addr_spec
from .errors import (
    ConnectionFailed,
    ConnectionTimeout,
    InvalidAddress,
    PopAccountsError,
    ProtocolError,
    RecipientRefused,
    SendingNotAllowed,
    ServerUnavailable,
    SMTPAuthFailed,
    SMTPStartTLSUnavailable,
    TokenRejected,
)
from .safety import check_fields
from .sasl import plain_response, xoauth2_response
from .types import AuthMethod, Credentials, NetPolicy, Security, ServerSpec

#: An initial response longer than this is sent in the two-step form (RFC 4954 §4).
_INITIAL_RESPONSE_MAX = 400

__all__ = ["SMTPClient", "check_smtp", "error_for_reply", "send"]

# -- the protocol ----------------------------------------------------------------------------


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode("utf-8") if isinstance(data, str) else data
                            ).decode("ascii")


def _text(resp: bytes | str) -> str:
    return resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)


def error_for_reply(code: int, resp: bytes | str, *, stage: str) -> PopAccountsError:
    """A named error for an unexpected SMTP reply at ``stage``."""
    detail = f"{stage}: {code} {_text(resp)}"
    if 400 <= code < 500:
        return ServerUnavailable(detail=detail)
    if stage == "auth" and code in (530, 534, 535, 538, 454, 500, 501, 504):
        return SMTPAuthFailed(detail=detail)
    if stage == "rcpt":
        return RecipientRefused(detail=detail)
    if stage in ("mail", "data", "auth"):
        return SendingNotAllowed(detail=detail)
    return ProtocolError(detail=detail)


class SMTPClient(smtplib.SMTP):
    """``smtplib.SMTP`` over a socket from :mod:`.net`; use :meth:`open`."""

    def __init__(self, sock: socket.socket, host: str, *, local_hostname: str,
                 timeout: float) -> None:
        # Never let smtplib connect or look up our own FQDN (slow, and not its job here).
        super().__init__(local_hostname=local_hostname, timeout=timeout)
        self.sock = sock
        self._host = host

    @classmethod
    def open(cls, server: ServerSpec, net: NetPolicy, *, local_hostname: str = "localhost"
             ) -> SMTPClient:
        """Connect, read the greeting, EHLO; STARTTLS (required) and EHLO again if asked."""
        check_fields(host=server.host, username=server.username, local_hostname=local_hostname)
        host = netmod.check_host(server.host)
        sock = netmod.open_connection(host, server.port, server.security, net)
        client = cls(sock, host, local_hostname=local_hostname, timeout=net.read_timeout)
        try:
            with _translate("greeting"):
                code, resp = client.getreply()
            if code != 220:
                raise error_for_reply(code, resp, stage="greeting")
            client._ehlo_checked()
            if server.security is Security.STARTTLS:
                client._starttls(host, net)
        except BaseException:
            client.close()
            raise
        return client

    def _ehlo_checked(self) -> None:
        with _translate("ehlo"):
            code, resp = self.ehlo()
        if code != 250:
            raise ProtocolError("the server refused EHLO", detail=f"{code} {_text(resp)}")

    def _starttls(self, host: str, net: NetPolicy) -> None:
        if not self.has_extn("starttls"):
            raise SMTPStartTLSUnavailable(detail="STARTTLS not in EHLO")
        with _translate("starttls"):
            code, resp = self.docmd("STARTTLS")
        if code != 220:
            raise SMTPStartTLSUnavailable(detail=f"{code} {_text(resp)}")
        assert self.sock is not None
        self.sock = netmod.wrap_tls(self.sock, host, net, starttls=True)
        # RFC 3207: forget everything learnt before TLS and ask again.
        self.file = None
        self.helo_resp = None
        self.ehlo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        self._ehlo_checked()

    def auth_mechanisms(self) -> frozenset[str]:
        return frozenset(self.esmtp_features.get("auth", "").upper().split())

    def _step(self, line: str, stage: str = "auth") -> tuple[int, bytes]:
        check_fields(command=line)  # every line we write ourselves (smtplib's: see open)
        with _translate(stage):
            self.send(line + "\r\n")
            return self.getreply()

    def authenticate(self, username: str, creds: Credentials) -> str:
        """AUTH with the credentials; returns the mechanism used. Only 235 is success."""
        check_fields(username=username, secret=creds.secret)
        mechs = self.auth_mechanisms()
        if creds.method is AuthMethod.XOAUTH2:
            if "XOAUTH2" not in mechs:
                raise SendingNotAllowed("the server does not offer XOAUTH2",
                                        detail=" ".join(sorted(mechs)))
            return self._auth_xoauth2(username, creds.secret)
        if "PLAIN" in mechs:
            token = _b64(plain_response(username, creds.secret))
            if len(token) <= _INITIAL_RESPONSE_MAX:
                code, resp = self._step(f"AUTH PLAIN {token}")
            else:
                code, resp = self._step("AUTH PLAIN")
                if code == 334:
                    code, resp = self._step(token)
            self._auth_done(code, resp)
            return "PLAIN"
        if "LOGIN" in mechs:
            code, resp = self._step("AUTH LOGIN")
            if code == 334:
                code, resp = self._step(_b64(username))
                if code == 334:
                    code, resp = self._step(_b64(creds.secret))
            self._auth_done(code, resp)
            return "LOGIN"
        raise SendingNotAllowed("the server offers no password sign-in",
                                detail="AUTH: " + (" ".join(sorted(mechs)) or "not offered"))

    def _auth_xoauth2(self, username: str, token: str) -> str:
        # Always two steps: a token easily exceeds what an initial response may carry.
        code, resp = self._step("AUTH XOAUTH2")
        if code == 334:
            code, resp = self._step(_b64(xoauth2_response(username, token)))
            if code == 334:
                # The server sent an error challenge (base64 JSON); an empty line ends it.
                code, resp = self._step("")
                raise TokenRejected(detail=f"{code} {_text(resp)}")
        if code != 235:
            if 500 <= code < 600:
                raise TokenRejected(detail=f"{code} {_text(resp)}")
            raise error_for_reply(code, resp, stage="auth")
        return "XOAUTH2"

    @staticmethod
    def _auth_done(code: int, resp: bytes) -> None:
        if code != 235:  # 503 included: smtplib would have taken it for success
            raise error_for_reply(code, resp, stage="auth")

    def check_sender(self, address: str) -> None:
        """MAIL FROM then RSET: does the server let this session send as ``address``?"""
        addr = check_addr_spec(address)
        with _translate("mail"):
            code, resp = self.mail(addr)
        if code != 250:
            raise error_for_reply(code, resp, stage="mail")
        with _translate("rset"):
            self.rset()

    def send_bytes(self, mail_from: str, rcpt_to: Iterable[str], data: bytes
                   ) -> dict[str, tuple[int, bytes]]:
        """MAIL, RCPT for each, DATA. Returns the recipients refused (when some were).

        An empty ``mail_from`` is the null sender (``MAIL FROM:<>``, automatic replies).
        """
        sender = check_addr_spec(mail_from) if mail_from != "" else ""
        rcpts = [check_addr_spec(r) for r in rcpt_to]
        if not rcpts:
            raise InvalidAddress("no recipients")
        try:
            with _translate("send"):
                refused: dict[str, tuple[int, bytes]] = self.sendmail(sender, rcpts, data)
        except smtplib.SMTPSenderRefused as exc:
            raise error_for_reply(exc.smtp_code, exc.smtp_error, stage="mail") from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [c for c, _m in exc.recipients.values()]
            if codes and all(400 <= c < 500 for c in codes):
                raise ServerUnavailable(detail=f"rcpt: {codes}") from None
            raise RecipientRefused(detail=f"rcpt: {sorted(exc.recipients)}") from None
        except smtplib.SMTPDataError as exc:
            raise error_for_reply(exc.smtp_code, exc.smtp_error, stage="data") from None
        return refused

    def quit_quietly(self) -> None:
        try:
            self.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            self.close()


class _translate:
    """Turn smtplib/socket failures during a protocol step into named errors."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if exc is None or isinstance(exc, PopAccountsError):
            return
        if isinstance(exc, (smtplib.SMTPSenderRefused, smtplib.SMTPRecipientsRefused,
                            smtplib.SMTPDataError)):
            return  # the caller maps these with their codes
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            raise ConnectionFailed("the server closed the connection",
                                   detail=f"{self.stage}: {exc}") from None
        if isinstance(exc, TimeoutError):
            raise ConnectionTimeout("the server did not answer in time",
                                    detail=f"{self.stage}: {exc}") from None
        if isinstance(exc, OSError):
            raise ConnectionFailed(detail=f"{self.stage}: {exc}") from None
        if isinstance(exc, smtplib.SMTPResponseException):
            raise error_for_reply(exc.smtp_code, exc.smtp_error, stage=self.stage) from None
        if isinstance(exc, smtplib.SMTPException):
            raise ProtocolError(detail=f"{self.stage}: {exc}") from None


@contextmanager
def _session(server: ServerSpec, creds: Credentials | None, net: NetPolicy,
             local_hostname: str) -> Iterator[SMTPClient]:
    """An open session, authenticated when ``creds``; QUIT after the block, or, when
    anything in it fails, only closed (nothing half-done is confirmed)."""
    client = SMTPClient.open(server, net, local_hostname=local_hostname)
    try:
        if creds is not None:
            client.authenticate(server.username, creds)
        yield client
    except BaseException:
        client.close()
        raise
    client.quit_quietly()


def check_smtp(server: ServerSpec, creds: Credentials | None, *, net: NetPolicy,
               sender: str | None = None, local_hostname: str = "localhost") -> frozenset[str]:
    """Connect, TLS (verified), EHLO, AUTH when ``creds``, MAIL FROM ``sender`` + RSET, QUIT.

    Returns the EHLO keywords. Raises the named errors of :mod:`.errors`.
    """
    with _session(server, creds, net, local_hostname) as client:
        if sender:
            client.check_sender(sender)
        return frozenset(k.upper() for k in client.esmtp_features)


def send(server: ServerSpec, creds: Credentials | None, *, net: NetPolicy, mail_from: str,
         rcpt_to: Iterable[str], data: bytes, local_hostname: str = "localhost"
         ) -> dict[str, tuple[int, bytes]]:
    """One message through the server (connect, TLS, EHLO, AUTH when ``creds``, send, QUIT).

    Returns the recipients the server refused when it accepted others.
    """
    with _session(server, creds, net, local_hostname) as client:
        return client.send_bytes(mail_from, rcpt_to, data)
