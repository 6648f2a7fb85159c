"""A scripted one-connection POP3 server, for the few behaviours Dovecot cannot show.

Only used *in addition to* real-Dovecot tests: STLS answered with -ERR, plaintext
injected after STLS's +OK, a server without UIDL, a server that never speaks.
``FakePOP(handler)`` runs ``handler(conn)`` for each connection in a thread; the
handler reads lines with ``conn.readline()`` and writes with ``conn.send(b"...")``.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable

from tests.support.dovecot import free_port


class FakeConn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock: socket.socket = sock
        self.buf = b""
        self.received: list[bytes] = []  #: every line the client sent

    def readline(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                raise EOFError
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        self.received.append(line)
        return line

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def wait_closed(self, timeout: float = 10.0) -> None:
        """Say nothing more and keep the connection open until the client hangs up
        (or ``timeout`` passes): a silent or stuck server, without a fixed sleep."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(4096):
                pass
        except (OSError, ssl.SSLError):
            pass

    def start_tls(self, ctx: ssl.SSLContext) -> None:
        self.sock = ctx.wrap_socket(self.sock, server_side=True)


class FakePOP:
    def __init__(self, handler: Callable[[FakeConn], None]) -> None:
        self.port = free_port()
        self.handler = handler
        self.conns: list[FakeConn] = []
        self.errors: list[BaseException] = []
        self._lsock = socket.create_server(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self._lsock.accept()
            except OSError:
                return
            conn = FakeConn(sock)
            self.conns.append(conn)
            try:
                self.handler(conn)
            except (EOFError, OSError):
                pass
            except BaseException as exc:  # surfaced by the test
                self.errors.append(exc)
            finally:
                conn.sock.close()

    def close(self) -> None:
        self._lsock.close()

    def __enter__(self) -> FakePOP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
