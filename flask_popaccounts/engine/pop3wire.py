"""The bytes of one POP3 connection: bounded lines, streamed bodies, what -ERR means.

:class:`Wire` reads through one buffer: status and listing lines are bounded
(:data:`MAX_LINE`), message bodies of any size and any line length stream into a file
and end only at their terminating ``.CRLF`` line (so a dropped connection can never
yield a truncated message); every read has the read timeout and the whole session a
deadline. :func:`error_for_response` names the failure an ``-ERR`` line reports.
:class:`~.pop3.POP3Client` speaks the commands over it.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import IO

from . import net as _net
from .errors import (
    AuthenticationFailed,
    ConnectionFailed,
    ConnectionTimeout,
    LoginDelay,
    MailboxInUse,
    PopAccountsError,
    ProtocolError,
    ServerRefused,
    ServerUnavailable,
)
from .types import NetPolicy

MAX_LINE = 64 * 1024  #: longest status or listing line we accept
RECV_SIZE = 256 * 1024

_RESP_CODE_ERRORS: dict[str, type[PopAccountsError]] = {
    "AUTH": AuthenticationFailed,
    "IN-USE": MailboxInUse,
    "LOGIN-DELAY": LoginDelay,
    "SYS/TEMP": ServerUnavailable,
    "SYS/PERM": ServerRefused,
}


def resp_code(text: bytes) -> str:
    """The RESP-CODE of an -ERR/+OK line's text (``b"[IN-USE] busy"`` -> ``"IN-USE"``)."""
    t = text.lstrip()
    if t.startswith(b"["):
        end = t.find(b"]")
        if end > 0:
            return t[1:end].decode("ascii", "replace").upper()
    return ""


def error_for_response(
    text: bytes, default: type[PopAccountsError], message: str | None = None
) -> PopAccountsError:
    """The named error for an -ERR line, by its RESP-CODE, else ``default``."""
    code = resp_code(text)
    cls = _RESP_CODE_ERRORS.get(code)
    if cls is None:
        # Hierarchical codes (RFC 3206: SYS/TEMP/..., AUTH/...): match the prefix.
        for key, value in _RESP_CODE_ERRORS.items():
            if code.startswith(key + "/"):
                cls = value
                break
    if cls is AuthenticationFailed and issubclass(default, AuthenticationFailed):
        cls = default  # keep TokenRejected for XOAUTH2
    return (cls or default)(message, detail=text)


class POP3Error(Exception):
    """An ``-ERR`` answer not (yet) mapped to a named error; carries the line text."""

    def __init__(self, text: bytes) -> None:
        super().__init__(text.decode("utf-8", "replace"))
        self.text = text


class Wire:
    """Buffered reads and plain writes on one connected socket; failures are named."""

    def __init__(self, sock: socket.socket, net: NetPolicy) -> None:
        self.sock = sock
        self.net = net
        self._buf = b""
        self._pos = 0
        self._deadline = (time.monotonic() + net.session_timeout
                          if net.session_timeout is not None else None)

    def start_tls(self, host: str) -> None:
        """TLS over the connection, verified against ``host`` (after STLS's +OK)."""
        # Anything the server (or a man in the middle) sent after "+OK" and before the
        # handshake is plaintext injection: it must never be read as a TLS-era answer.
        self._buf = b""
        self._pos = 0
        self.sock = _net.wrap_tls(self.sock, host, self.net)

    def send(self, data: bytes) -> None:
        """Write all of ``data`` (the caller has checked what goes into it)."""
        try:
            self.sock.sendall(data)
        except TimeoutError as exc:
            raise ConnectionTimeout("the server stopped reading", detail=str(exc)) from None
        except OSError as exc:
            raise ConnectionFailed("the connection was lost", detail=str(exc)) from None

    def close(self) -> None:
        """Drop the connection."""
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self) -> None:
        """Read more bytes into the buffer (dropping what was consumed)."""
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise self._session_too_long()
            self.sock.settimeout(min(self.net.read_timeout, left))
        try:
            data = self.sock.recv(RECV_SIZE)
        except TimeoutError as exc:
            if self._deadline is not None and time.monotonic() >= self._deadline:
                raise self._session_too_long() from None
            raise ConnectionTimeout("the server stopped answering", detail=str(exc)) from None
        except ssl.SSLError as exc:
            raise ConnectionFailed("the TLS connection failed", detail=str(exc)) from None
        except OSError as exc:
            raise ConnectionFailed("the connection was lost", detail=str(exc)) from None
        if not data:
            raise ConnectionFailed("the server closed the connection")
        if self._pos:
            self._buf = self._buf[self._pos :] + data
            self._pos = 0
        else:
            self._buf += data

    def _session_too_long(self) -> ConnectionTimeout:
        return ConnectionTimeout("the session took too long",
                                 detail=f"over {self.net.session_timeout} s")

    def readline(self, limit: int = MAX_LINE) -> bytes:
        """One line without its line end (CRLF, or a bare LF from sloppy servers)."""
        while True:
            i = self._buf.find(b"\n", self._pos)
            if i >= 0:
                line = self._buf[self._pos : i]
                self._pos = i + 1
                if len(line) > limit:
                    raise ProtocolError("line too long", detail=line[:100])
                return line[:-1] if line.endswith(b"\r") else line
            if len(self._buf) - self._pos > limit:
                raise ProtocolError("line too long", detail=self._buf[self._pos : self._pos + 100])
            self._fill()

    def read_body_into(self, out: IO[bytes], limit: int | None = None) -> int:
        """Stream one multi-line body into ``out`` until ``.CRLF``; returns octets written.

        Works on whole buffers: only positions right after a LF that hold a ``.`` need
        attention (terminator or dot-stuffing), everything between is copied as is.
        ``limit``: more octets than this raise :class:`ProtocolError`.
        """
        written = 0
        at_line_start = True
        while True:
            buf, pos = self._buf, self._pos
            if at_line_start:
                if len(buf) - pos < 3 and (pos >= len(buf) or buf[pos] == 0x2E):
                    # Need up to three bytes to tell ".\r\n" from a stuffed dot.
                    if buf[pos : pos + 2] == b".\n":
                        self._pos = pos + 2
                        return written
                    self._fill()
                    continue
                if buf[pos] == 0x2E:  # "."
                    if buf[pos : pos + 3] == b".\r\n":
                        self._pos = pos + 3
                        return written
                    if buf[pos : pos + 2] == b".\n":
                        self._pos = pos + 2
                        return written
                    pos += 1  # dot-unstuffing
                at_line_start = False
            i = buf.find(b"\n.", pos)
            if i >= 0:
                chunk = buf[pos : i + 1]
                self._pos = i + 1
                at_line_start = True
            else:
                chunk = buf[pos:]
                self._pos = len(buf)
                at_line_start = buf.endswith(b"\n") if chunk else at_line_start
            if chunk:
                out.write(chunk)
                written += len(chunk)
                if limit is not None and written > limit:
                    raise ProtocolError("a message is much larger than its listed size",
                                        detail=f"over {limit} octets")
            if i < 0:
                self._buf, self._pos = b"", 0
                self._fill()
