"""Waiting on conditions, with a deadline and a message that says what never happened.

Tests never sleep for a fixed time to "let something happen": they poll the condition
they are about (a lease renewed, a fetch finished, a login in Dovecot's log, a worker
ready) until it holds or the deadline passes. Deadlines are generous (a loaded CI
machine is slow, not broken); a passing run returns as soon as the condition holds.

``wait_until(lambda: count() == 3, 10, "three stored messages")`` returns the
condition's (truthy) value; on timeout it raises ``AssertionError`` naming ``what``,
with ``detail()``'s text when given (e.g. the tail of a server log).

:class:`LineReader` follows a subprocess's output line by line, so a test can wait for
the line a worker prints when it reaches a point (``READY``, a phase) with a deadline,
instead of a blocking ``readline()`` that hangs forever when the worker never prints it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import IO, TypeVar

T = TypeVar("T")


def wait_until(cond: Callable[[], T], timeout: float, what: str, *, step: float = 0.05,
               detail: Callable[[], object] | None = None) -> T:
    """Poll ``cond`` every ``step`` seconds until it returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(step)  # a polling step, not a synchronisation


class LineReader:
    """Collects a stream's lines in a background thread; :meth:`expect` waits for one.

    ``lines`` keeps every line read so far (decoded, without the newline), so a test can
    tell after the fact where a killed worker had got to.
    """

    def __init__(self, stream: IO[bytes] | IO[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[bytes] | IO[str]) -> None:
        try:
            while raw := stream.readline():
                text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
                line = text.rstrip("\r\n")
                self.lines.append(line)
                self._queue.put(line)
        finally:
            self._queue.put(None)  # end of stream

    def expect(self, match: Callable[[str], bool], timeout: float, what: str) -> str | None:
        """The next line for which ``match`` is true; None if the stream ended first.

        Raises ``AssertionError`` when neither happened before the deadline.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                     f"last lines: {self.lines[-5:]}")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                return None
            if match(line):
                return line

    def finish(self, timeout: float = 30) -> list[str]:
        """Wait for the end of the stream (the process has exited); all lines read."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the stream did not end within {timeout}s")
        return self.lines
