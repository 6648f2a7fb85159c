"""A TCP proxy that resets the connection after a chosen number of bytes.

Sits between the engine and Dovecot on loopback. For each accepted connection it
takes the next cut offset (``cut_next(n)``; ``None`` = never cut): once ``n`` bytes
have passed in total (both directions, TLS records included) it forwards exactly the
bytes up to the offset and then aborts both sides with a TCP RST (SO_LINGER 0), the
way a flaky network or a crashing middlebox does.
"""

from __future__ import annotations

import collections
import selectors
import socket
import struct
import threading

from tests.support.dovecot import free_port


def _rst_close(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class FaultProxy:
    """``FaultProxy(target_host, target_port)``; connect the client to ``(host, port)``."""

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = free_port(host)
        self._cuts: collections.deque[tuple[int, bool] | None] = collections.deque()
        self.cuts_done = 0  #: connections that were actually reset
        self.connections = 0
        self._live: set[socket.socket] = set()  # both ends of every open connection
        self._live_lock = threading.Lock()
        self._lsock = socket.create_server((host, self.port))
        self._lsock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def cut_next(self, offset: int | None, *, on_reply: bool = False) -> None:
        """The next connection is reset after ``offset`` bytes (``None``: left alone).

        ``on_reply``: count only the client's bytes, and once ``offset`` of them have
        passed, reset the connection instead of forwarding the server's next bytes (the
        reply to what the client just sent is lost: "did it arrive?").
        """
        self._cuts.append(None if offset is None else (offset, on_reply))

    def forget_cuts(self) -> None:
        """Drop the cuts no connection has taken yet."""
        self._cuts.clear()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._lsock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            cut = self._cuts.popleft() if self._cuts else None
            self.connections += 1
            threading.Thread(target=self._pump, args=(client, cut), daemon=True).start()

    @property
    def live(self) -> int:
        """Connections still open (each counts once)."""
        with self._live_lock:
            return len(self._live) // 2

    def _pump(self, client: socket.socket, plan: tuple[int, bool] | None) -> None:
        cut, on_reply = plan if plan is not None else (None, False)
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _rst_close(client)
            return
        # No send may block forever: a stuck pump would keep the server's session (and
        # its mailbox lock) alive until the server's own idle timeout.
        client.settimeout(30)
        upstream.settimeout(30)
        with self._live_lock:
            self._live.update((client, upstream))
        passed = 0
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, upstream)
        sel.register(upstream, selectors.EVENT_READ, client)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.2):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    dst: socket.socket = key.data
                    try:
                        data = src.recv(65536)
                    except OSError:
                        return
                    if not data:
                        try:
                            dst.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        sel.unregister(src)
                        if not sel.get_map():
                            return
                        continue
                    if on_reply and cut is not None:
                        if src is upstream and passed >= cut:
                            self.cuts_done += 1  # the reply is never forwarded
                            return
                        if src is client:
                            passed += len(data)
                        dst.sendall(data)
                        continue
                    if cut is not None and passed + len(data) >= cut:
                        data = data[: cut - passed]
                        if data:
                            dst.sendall(data)
                        self.cuts_done += 1
                        return
                    passed += len(data)
                    dst.sendall(data)
        except OSError:
            return
        finally:
            sel.close()
            with self._live_lock:
                self._live.difference_update((client, upstream))
            _rst_close(client)
            _rst_close(upstream)

    def close(self) -> None:
        self._stop.set()
        self._lsock.close()
        self._thread.join(2)
        with self._live_lock:
            left = list(self._live)
        for sock in left:  # the pumps notice within their select timeout; do not wait
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
