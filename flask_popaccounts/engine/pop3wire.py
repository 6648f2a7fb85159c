"""The bytes of one POP3 connection: bounded lines, streamed bodies, what -ERR means.

:class:`Wire` reads through one buffer: status and listing lines are bounded
(:data:`MAX_LINE`), message bodies of any size and any line length stream into a file
and end only at their terminating line (so a dropped connection can never yield a
truncated message); every read has the read timeout and the whole session a deadline.
:func:`error_for_response` names the failure an ``-ERR`` line reports.
:class:`~.pop3.POP3Client` speaks the commands over it.

What a line end is, in one rule: CRLF (RFC 1939). A server whose greeting ends with a
bare LF is an LF-only server, and then LF is its line end. Inside a message, a line
end that is not the server's (a bare LF in a CRLF message) is data: a ``.`` after it
is neither a terminator nor dot-stuffing. At a line start, ``..`` loses its first dot
(RFC 1939 byte-stuffing), ``.`` + line end is the terminator, and any other ``.`` is
kept (an unstuffed line from a sloppy server: never drop a byte).

Being in step: once an answer is complete and no command is outstanding, any byte
the server sent more (:meth:`Wire.check_idle`) means its answers and our commands no
longer pair up: :class:`~.errors.ProtocolOutOfStep`. Bytes that arrive with STLS's
``+OK``, before the handshake, are injection: :class:`~.errors.TLSInjection`.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from typing import IO

from . import net as _net
from .errors import (
    AuthenticationFailed,
    BadServerAnswer,
    ConnectionFailed,
    ConnectionLost,
    ConnectionTimeout,
    LoginDelay,
    MailboxInUse,
    MessageSizeMismatch,
    PopAccountsError,
    ProtocolError,
    ProtocolOutOfStep,
    ServerRefused,
    ServerStoppedAnswering,
    ServerUnavailable,
    SessionTooLong,
    TLSInjection,
)
from .types import NetPolicy

MAX_LINE = 64 * 1024  #: longest status or listing line we accept
RECV_SIZE = 256 * 1024
SIZE_SLACK = 256  #: octets a body may differ from its announced size beyond 2 per line
BODY_SLACK = 1024 * 1024  #: a body may exceed its LIST size by this much (then 2x)

_RETR_OK = re.compile(rb"\+OK(?: (?:(\d+) octets\b)?.*)?", re.S | re.I)
_STATUS_LINE = re.compile(rb"(?:\+OK|-ERR)(?: |\r?\n|\r?$)")

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
        self.eol = b"\r\n"  #: the server's line end (b"\n" once its greeting shows LF-only)
        self.answered = False  #: the server has sent a whole line (its greeting) at least
        self.body_lines = 0  #: line ends in the last body read (size checks allow for them)
        self._deadline = (time.monotonic() + net.session_timeout
                          if net.session_timeout is not None else None)

    def start_tls(self, host: str) -> None:
        """TLS over the connection, verified against ``host`` (after STLS's +OK).

        Anything the server (or a man in the middle) sent after "+OK" and before the
        handshake is plaintext injection (CVE-2021-39272): the session ends here, before
        any credential is sent, rather than carry on as if nothing happened.
        """
        extra = self._unexplained()
        if extra:
            raise TLSInjection("data arrived before the TLS handshake", detail=extra[:100])
        self.sock = _net.wrap_tls(self.sock, host, self.net, starttls=True)

    def send(self, data: bytes) -> None:
        """Write all of ``data`` (the caller has checked what goes into it)."""
        try:
            self.sock.sendall(data)
        except TimeoutError as exc:
            cls = ServerStoppedAnswering if self.answered else ConnectionTimeout
            raise cls("the server stopped reading", detail=str(exc)) from None
        except OSError as exc:
            raise self._lost("the connection was lost", exc) from None

    def close(self) -> None:
        """Drop the connection."""
        try:
            self.sock.close()
        except OSError:
            pass

    def _lost(self, what: str, exc: BaseException | None = None) -> ConnectionFailed:
        cls = ConnectionLost if self.answered else ConnectionFailed
        return cls(what, detail=str(exc) if exc is not None else None)

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
            if self.answered:
                raise ServerStoppedAnswering("the server stopped answering",
                                             detail=str(exc)) from None
            raise ConnectionTimeout("the server sent no greeting", detail=str(exc)) from None
        except ssl.SSLError as exc:
            raise self._lost("the TLS connection failed", exc) from None
        except OSError as exc:
            raise self._lost("the connection was lost", exc) from None
        if not data:
            raise self._lost("the server closed the connection")
        if self._pos:
            self._buf = self._buf[self._pos :] + data
            self._pos = 0
        else:
            self._buf += data

    def _session_too_long(self) -> ConnectionTimeout:
        cls = SessionTooLong if self.answered else ConnectionTimeout
        return cls("the session took too long", detail=f"over {self.net.session_timeout} s")

    def _unexplained(self) -> bytes:
        """Bytes already received that no command has read yet (buffered or in the socket)."""
        extra = self._buf[self._pos :]
        if extra:
            return extra
        if isinstance(self.sock, ssl.SSLSocket):
            # Only decrypted bytes count: a record still in flight is found by later reads.
            pending = self.sock.pending()
            return self.sock.recv(pending) if pending else b""
        timeout = self.sock.gettimeout()
        try:
            self.sock.settimeout(0)
            return self.sock.recv(100, socket.MSG_PEEK)
        except OSError:
            return b""  # nothing there (or a broken connection, which the next read reports)
        finally:
            self.sock.settimeout(timeout)

    def check_idle(self, after: str) -> None:
        """Nothing is outstanding: any byte received now is unexplained (out of step)."""
        extra = self._unexplained()
        if extra:
            raise ProtocolOutOfStep(f"data no command asked for arrived after {after}",
                                    detail=extra[:100])

    def next_is_status(self) -> bool:
        """What is buffered could begin a status line (or nothing is buffered yet)."""
        head = self._buf[self._pos : self._pos + 4]
        return b"+OK".startswith(head[:3]) or b"-ERR".startswith(head)

    def readline(self, limit: int = MAX_LINE) -> bytes:
        """One line without its line end (see the module's rule on line ends).

        The first line read (the greeting) also decides the line end: CRLF, or LF for
        a server whose greeting ends with a bare LF.
        """
        sep = self.eol if self.answered else b"\n"
        while True:
            i = self._buf.find(sep, self._pos)
            if i >= 0:
                line = self._buf[self._pos : i]
                self._pos = i + len(sep)
                if not self.answered:
                    self.answered = True
                    self.eol = b"\r\n" if line.endswith(b"\r") else b"\n"
                if line.endswith(b"\r"):
                    line = line[:-1]  # the greeting's CR, or an LF-only server's stray CR
                if len(line) > limit:
                    raise self._too_long(line)
                return line
            if len(self._buf) - self._pos > limit:
                raise self._too_long(self._buf[self._pos : self._pos + 100])
            self._fill()

    def _too_long(self, line: bytes) -> ProtocolError:
        cls = BadServerAnswer if self.answered else ProtocolError
        return cls("line too long", detail=line[:100])

    def _at_line_start(self) -> tuple[int, bool | None]:
        """At a line start: (bytes to skip, True at the terminator / None: need more bytes)."""
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            return 0, None
        if buf[pos] != 0x2E:  # "."
            return 0, False
        rest = buf[pos : pos + 3]
        terminators = (b".\r\n", b".\n") if self.eol == b"\n" else (b".\r\n",)
        for term in terminators:
            if rest.startswith(term):
                return len(term), True
        if rest.startswith(b".."):
            return 1, False  # byte-stuffed: drop the first dot
        if any(term.startswith(rest) for term in terminators):
            return 0, None  # "." or ".\r" so far: wait for the next byte
        return 0, False  # a "." the server did not stuff: data, kept

    def read_body_into(self, out: IO[bytes], limit: int | None = None) -> int:
        """Stream one multi-line body into ``out`` up to its terminator; returns octets written.

        Works on whole buffers: only positions right after a line end (the server's) that
        hold a ``.`` need attention, everything between is copied as is. ``limit``: more
        octets than this raise :class:`~.errors.MessageSizeMismatch`. Sets ``body_lines``.
        """
        eol = self.eol
        mark = eol + b"."
        keep = len(mark) - 1  # a line end split across reads must still be seen
        written = lines = 0
        at_line_start = True
        while True:
            if at_line_start:
                skip, end = self._at_line_start()
                if end is None:
                    self._fill()
                    continue
                self._pos += skip
                if end:
                    self.body_lines = lines
                    return written
                at_line_start = False
            buf, pos = self._buf, self._pos
            i = buf.find(mark, pos)
            if i >= 0:
                stop = i + len(eol)
                at_line_start = True
            else:
                stop = max(pos, len(buf) - keep)
            if stop > pos:
                chunk = buf[pos:stop]
                out.write(chunk)
                written += len(chunk)
                lines += chunk.count(b"\n")
                if limit is not None and written > limit:
                    raise MessageSizeMismatch("a message is much larger than its listed size",
                                              detail=f"over {limit} octets")
            self._pos = stop
            if i < 0:
                self._fill()


def read_message(wire: Wire, line: bytes, listed: int | None, spool: IO[bytes], *,
                 more: bool) -> int:
    """One RETR answer after its status ``line`` into ``spool`` (left at 0), checked in step.

    The status must be ``+OK`` (optionally "n octets"); the body must not begin with a
    status line (an answer that arrived late). When the status announces n octets, the
    body must have about that many (within two octets per line for LF/CRLF counting,
    plus :data:`SIZE_SLACK`), and so must the LIST size ``listed`` of the message asked
    for: an answer meant for another message is caught there. (The body itself is not
    held to LIST, which some servers only estimate; only to the :data:`BODY_SLACK`
    bound.) ``more``: further answers are outstanding (pipelining), so what follows must
    look like one; otherwise nothing may follow. Any failure is
    :class:`~.errors.ProtocolOutOfStep`, raised before the message is handed over.
    Returns the octets stored.
    """
    form = _RETR_OK.fullmatch(line)
    if form is None:
        raise ProtocolOutOfStep("unexpected answer to RETR", detail=line)
    # A body far beyond its LIST size is a broken or hostile server filling our disk.
    limit = None if listed is None else max(2 * listed, listed + BODY_SLACK)
    octets = wire.read_body_into(spool, limit)
    spool.seek(0)
    head = spool.read(8)
    spool.seek(0)
    if _STATUS_LINE.match(head):
        raise ProtocolOutOfStep("a RETR answer holds another answer", detail=head)
    if form.group(1):
        announced = int(form.group(1))
        slack = 2 * wire.body_lines + SIZE_SLACK
        for what, size in (("the body", octets), ("LIST", listed)):
            if size is not None and abs(announced - size) > slack:
                raise ProtocolOutOfStep(f"a RETR answer's octets disagree with {what}",
                                        detail=f"{announced} announced, {size}")
    if more:
        if not wire.next_is_status():
            raise ProtocolOutOfStep("data no command asked for followed a message")
    else:
        wire.check_idle("RETR")
    return octets
