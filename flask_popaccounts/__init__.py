"""flask-popaccounts: bring outside POP3 mailboxes into any Flask webmail."""

from __future__ import annotations

__version__ = "0.1.0"
