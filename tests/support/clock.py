"""A clock for tests: time moves when the test says so.

``FakeClock()`` starts at the real current time (so tokens, certificates and ids issued
by real servers still look recent) and then stands still; ``advance(seconds=...)`` or
``set(when)`` move it. Calling it returns an aware UTC datetime, the package's
:data:`~flask_popaccounts.engine.clock.Clock`; pass it as ``PopAccounts(app, clock=...)``
or put it on an existing app with :func:`use_clock`. :meth:`timestamp` is the same time
as epoch seconds, for the test authorization server (``AuthServer.clock``).
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from flask import Flask


class FakeClock:
    """Settable, advanceable; safe to read from the package's threads."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(timezone.utc)
        if self._now.tzinfo is None:
            raise ValueError("a FakeClock needs an aware datetime")
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def timestamp(self) -> float:
        return self().timestamp()

    def advance(self, seconds: float = 0, **delta: float) -> datetime:
        """Move on by ``seconds`` (and/or ``timedelta`` keywords: ``hours=1``); the new now."""
        with self._lock:
            self._now += timedelta(seconds=seconds, **delta)
            return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("a FakeClock needs an aware datetime")
        with self._lock:
            self._now = when


def use_clock(app: Flask, clock: FakeClock) -> Flask:
    """Make an already built app read its time from ``clock`` and return the app (for
    apps built by a factory that takes no ``clock=``, such as the example app)."""
    from flask_popaccounts import get_state

    get_state(app).clock = clock
    return app
