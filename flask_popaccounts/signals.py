"""Blinker signals (Flask's own mechanism) a host can subscribe to.

Each is sent with the app as sender and keyword arguments:

- ``message_fetched``: ``account_id``, ``message_id`` (after the commit that stored it);
  with a host delivery (:mod:`.hooks`) ``message_id`` is None and ``delivery_id`` names
  the message (its ``X-PopAccounts-Id``, its Maildir file name)
- ``account_fetched``: ``account_id``, ``report`` (a FetchReport) after a successful fetch
- ``account_failed``: ``account_id``, ``code``, ``transient``
- ``account_disabled``: ``account_id``, ``code`` (automatic fetching stopped: the user must act)
- ``account_recovered``: ``account_id`` (first success after failures, or re-enabled)

The extension sends them with :func:`send`: a receiver's error is logged
(``flask_popaccounts.signals``), never raised into the fetch.
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import NamedSignal, Namespace

log = logging.getLogger("flask_popaccounts.signals")

_signals = Namespace()

message_fetched = _signals.signal("popaccounts.message-fetched")
account_fetched = _signals.signal("popaccounts.account-fetched")
account_failed = _signals.signal("popaccounts.account-failed")
account_disabled = _signals.signal("popaccounts.account-disabled")
account_recovered = _signals.signal("popaccounts.account-recovered")


def send(signal: NamedSignal, sender: Any, **kwargs: Any) -> None:
    """Send ``signal`` to each receiver; a receiver that raises is logged, not raised.

    Every send site of the extension goes through here: a host's bug in a receiver
    must never abort a fetch (the store's commit, the deletions that follow), record a
    failure on the account, or stop the other receivers.
    """
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender, **kwargs)
        except Exception:
            log.exception("a receiver of the %s signal raised (ignored)", signal.name)
