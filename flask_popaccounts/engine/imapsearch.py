"""IMAP read-back: does a mailbox on the host's platform hold a message with this header?

What an LMTP delivery asks after a crash between the server's 250 and our commit, before
it delivers the message again. ``imaplib`` speaks the protocol, over :mod:`.net`'s
socket (resolved once, connected to the checked address; TLS done and verified by us,
never by imaplib); STARTTLS is required unless the host chose implicit TLS. Only what a
read-back needs: LOGIN, EXAMINE (read-only: no flag changes), UID SEARCH HEADER, LOGOUT.

:func:`imap_utf7` is IMAP's modified UTF-7 for mailbox names (RFC 3501 §5.1.3), which
Dovecot's Maildir++ folders use on disk as well.
"""

from __future__ import annotations

import base64
import imaplib
import socket
from types import TracebackType

from . import net as netmod
from .errors import (
    AuthenticationFailed,
    ConnectionFailed,
    ProtocolError,
    TLSUnavailable,
)
from .safety import check_fields
from .types import NetPolicy, Security, ServerSpec


def imap_utf7(name: str) -> str:
    """``name`` in IMAP's modified UTF-7: ASCII as is ("&" as "&-"), the rest as
    "&" + base64 of UTF-16BE with "," for "/" + "-"."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=")
                       .replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _IMAP(imaplib.IMAP4):
    """imaplib over a socket we opened (imaplib would connect and do TLS by itself)."""

    def __init__(self, sock: socket.socket, host: str, timeout: float) -> None:
        self._given = sock
        super().__init__(host, 0, timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return self._given


class MailboxReader:
    """One IMAP session on the platform, signed in as one user; a context manager."""

    def __init__(self, server: ServerSpec, password: str, net: NetPolicy) -> None:
        check_fields(host=server.host, username=server.username, secret=password)
        self.server = server
        host = netmod.check_host(server.host)
        sock = netmod.open_connection(host, server.port, server.security, net)
        try:
            self.imap = _IMAP(sock, host, net.read_timeout)
            if server.security is Security.STARTTLS:
                self._starttls(host, net)
            self.imap.login(server.username, password)
        except imaplib.IMAP4.error as exc:
            sock.close()
            if "AUTHENTICATIONFAILED" in str(exc).upper() or "LOGIN" in str(exc).upper():
                raise AuthenticationFailed(detail=f"imap: {exc}") from None
            raise ProtocolError(detail=f"imap: {exc}") from None
        except (OSError, EOFError) as exc:
            sock.close()
            raise ConnectionFailed(detail=f"imap: {exc}") from None
        except BaseException:
            sock.close()
            raise

    def _starttls(self, host: str, net: NetPolicy) -> None:
        imap = self.imap
        if "STARTTLS" not in imap.capabilities:
            raise TLSUnavailable(detail="imap: STARTTLS not offered")
        typ, data = imap._simple_command("STARTTLS")
        if typ != "OK":
            raise TLSUnavailable(detail=f"imap starttls: {data!r}")
        imap.sock = netmod.wrap_tls(imap.sock, host, net)
        imap.file = imap.sock.makefile("rb")
        imap._tls_established = True  # type: ignore[attr-defined]
        # RFC 3501 §6.2.1: what was said before TLS does not count.
        typ, data = imap.capability()
        imap.capabilities = tuple(data[-1].upper().decode("ascii", "replace").split())

    def has_header(self, folders: list[str], name: str, value: str) -> bool:
        """Whether any of ``folders`` (those that exist) holds a message whose header
        ``name`` contains ``value``."""
        check_fields(header=name, value=value)
        try:
            for folder in folders:
                typ, _ = self.imap.select(_quoted(imap_utf7(folder)), readonly=True)
                if typ != "OK":
                    continue  # no such folder: nothing was delivered there
                typ, data = self.imap.uid("SEARCH", "HEADER", name, _quoted(value))
                if typ != "OK":
                    raise ProtocolError(detail=f"imap search: {data!r}")
                if data and data[0] and data[0].split():
                    return True
            return False
        except imaplib.IMAP4.error as exc:
            raise ProtocolError(detail=f"imap: {exc}") from None
        except (OSError, EOFError) as exc:
            raise ConnectionFailed(detail=f"imap: {exc}") from None

    def close(self) -> None:
        try:
            self.imap.logout()
        except (imaplib.IMAP4.error, OSError, EOFError):
            pass
        finally:
            try:
                self.imap.shutdown()
            except OSError:
                pass

    def __enter__(self) -> MailboxReader:
        return self

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


__all__ = ["MailboxReader", "imap_utf7"]
