"""A loopback TCP proxy that adds a fixed one-way delay in each direction.

Run it as its own process (so it never competes with a client for one GIL)::

    python -m bench.latency_proxy --listen 127.0.0.1:0 --upstream 127.0.0.1:995 --delay-ms 25

It prints ``READY <port>`` on stdout once it listens.

Model: each chunk read from one side is written to the other side ``delay`` seconds
later, order preserved, no bandwidth limit. A real connection also costs a round trip
before the server's greeting can arrive (SYN / SYN-ACK), so on accept the proxy waits
one round trip (2 x delay) before it connects upstream; the greeting then takes the
one-way delay on top. Without that, lock-step clients would look better than they are
(a trap noted in ``shared/testing-with-real-servers.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys

_TASKS: set[asyncio.Task[None]] = set()


class _Direction:
    """Delivers chunks to ``dest`` ``delay`` seconds after they were read, in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self.loop = loop
        self.delay = delay
        self.dest: asyncio.Transport | None = None
        self.queue: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self.scheduled = False

    def push(self, data: bytes | None) -> None:
        self.queue.append((self.loop.time() + self.delay, data))
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_at(self.queue[0][0], self._flush)

    def _flush(self) -> None:
        self.scheduled = False
        if self.dest is None:  # upstream not connected yet: retry shortly
            self.scheduled = True
            self.loop.call_later(0.001, self._flush)
            return
        now = self.loop.time()
        while self.queue and self.queue[0][0] <= now + 0.0002:
            _, data = self.queue.popleft()
            if self.dest.is_closing():
                self.queue.clear()
                return
            if data is None:
                try:
                    self.dest.write_eof()
                except (OSError, NotImplementedError, RuntimeError):
                    self.dest.close()
            else:
                self.dest.write(data)
        if self.queue:
            self.scheduled = True
            self.loop.call_at(self.queue[0][0], self._flush)


class _Side(asyncio.Protocol):
    def __init__(self, outgoing: _Direction, on_lost: object) -> None:
        self.outgoing = outgoing
        self.transport: asyncio.Transport | None = None
        self.on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.outgoing.push(data)

    def eof_received(self) -> bool:
        self.outgoing.push(None)
        return True  # keep the other half open until the EOF is delivered

    def connection_lost(self, exc: Exception | None) -> None:
        callback = self.on_lost
        if callable(callback):
            callback()


class DelayProxy:
    def __init__(self, upstream: tuple[str, int], delay: float) -> None:
        self.upstream = upstream
        self.delay = delay

    async def handle(
        self, client_sock_transport: asyncio.Transport, to_client: _Direction,
        to_server: _Direction,
    ) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(2 * self.delay)  # the TCP handshake's round trip
        try:
            transport, _server = await loop.create_connection(
                lambda: _Side(to_client, lambda: _close_later(loop, to_client, self.delay)),
                *self.upstream,
            )
        except OSError:
            client_sock_transport.close()
            return
        to_server.dest = transport  # type: ignore[assignment]
        if client_sock_transport.is_closing() and not to_server.queue:
            transport.close()

    def factory(self) -> asyncio.Protocol:
        loop = asyncio.get_event_loop()
        to_client = _Direction(loop, self.delay)
        to_server = _Direction(loop, self.delay)
        proxy = self

        class _Client(_Side):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                assert isinstance(transport, asyncio.Transport)
                to_client.dest = transport
                task = loop.create_task(proxy.handle(transport, to_client, to_server))
                _TASKS.add(task)
                task.add_done_callback(_TASKS.discard)

        return _Client(to_server, lambda: _close_later(loop, to_server, self.delay))


def _close_later(loop: asyncio.AbstractEventLoop, direction: _Direction, delay: float) -> None:
    """A side went away: close the other side once everything in flight is delivered."""

    def close() -> None:
        if direction.queue:
            loop.call_later(delay, close)
        elif direction.dest is not None:
            direction.dest.close()

    loop.call_later(delay + 0.001, close)


async def serve(listen: tuple[str, int], upstream: tuple[str, int], delay: float) -> None:
    loop = asyncio.get_running_loop()
    proxy = DelayProxy(upstream, delay)
    server = await loop.create_server(proxy.factory, *listen)
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    async with server:
        await server.serve_forever()


def _hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--delay-ms", type=float, required=True, help="one-way delay")
    args = ap.parse_args(argv)
    try:
        asyncio.run(serve(_hostport(args.listen), _hostport(args.upstream), args.delay_ms / 1000))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
