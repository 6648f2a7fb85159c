"""Blinker signals (Flask's own mechanism) a host can subscribe to.

Each is sent with the app as sender and keyword arguments:

- ``message_fetched``: ``account_id``, ``message_id`` (after the commit that stored it)
- ``account_fetched``: ``account_id``, ``report`` (a FetchReport) after a successful fetch
- ``account_failed``: ``account_id``, ``code``, ``transient``
- ``account_disabled``: ``account_id``, ``code`` (automatic fetching stopped: the user must act)
- ``account_recovered``: ``account_id`` (first success after failures, or re-enabled)
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

message_fetched = _signals.signal("popaccounts.message-fetched")
account_fetched = _signals.signal("popaccounts.account-fetched")
account_failed = _signals.signal("popaccounts.account-failed")
account_disabled = _signals.signal("popaccounts.account-disabled")
account_recovered = _signals.signal("popaccounts.account-recovered")
