"""A loopback TCP proxy with a slow downstream: the server's bytes reach the client at
no more than ``rate`` bytes per second (a provider or a line slower than loopback), so
a first sync takes the seconds it takes a user, and a page can be watched meanwhile.

``SlowLink(target_host, target_port, rate=2_000_000)``; connect the client to
``(link.host, link.port)``. The client's own bytes pass at once. Threads: one
acceptor, two pumps per connection; ``close()`` ends them all.
"""

from __future__ import annotations

import socket
import threading
import time

from tests.support.dovecot import free_port


class SlowLink:
    """See the module docstring."""

    def __init__(self, target_host: str, target_port: int, *, rate: float,
                 host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.rate = float(rate)
        self.host = host
        self.port = free_port(host)
        self._listener = socket.create_server((host, self.port))
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="slowlink-accept").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, None),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, self.rate),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, rate: float | None) -> None:
        start, sent = time.monotonic(), 0
        try:
            while True:
                data = src.recv(16384)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
                if rate:
                    # Pacing, not waiting for a condition: the link's speed.
                    sent += len(data)
                    ahead = start + sent / rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
        except OSError:  # the other side went away
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._open:
                sock.close()
            self._open.clear()

    def __enter__(self) -> SlowLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
