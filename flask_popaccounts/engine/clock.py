"""The one clock: every "now" in the package comes from here or from an injected one.

Time-dependent code (leases, back-off, token expiry, verification codes, vacation
replies) takes a :data:`Clock`, so tests move time on instead of waiting for it; the
extension keeps the app's clock (``PopAccounts(app, clock=...)``, default
:func:`utcnow`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

#: A source of the current time: an aware UTC datetime.
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(timezone.utc)
