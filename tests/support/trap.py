"""A listening loopback port that nothing may connect to: proof a secret never left.

    with Trap() as trap:
        ...  # point the form at trap.port; the page must refuse before connecting
        trap.assert_untouched()
"""

from __future__ import annotations

import socket

import pytest


class Trap:
    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(1)
        self._sock.settimeout(0.5)
        self.port: int = self._sock.getsockname()[1]

    def assert_untouched(self) -> None:
        """Fails when anything connected (accept returns instead of timing out)."""
        with pytest.raises(TimeoutError):
            self._sock.accept()

    def __enter__(self) -> Trap:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()
