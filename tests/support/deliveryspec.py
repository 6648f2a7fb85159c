"""Deliveries described in JSON, so a worker process (``fetch_worker``) builds the same one.

``spec`` is ``{"kind": "maildir", "root": PATH}`` or ``{"kind": "lmtp", "port": N,
"recipient": ADDRESS, "imaps_port": N, "password": PASSWORD}`` (``imaps_port`` None: no
read-back); the worker reads it from the environment variable :data:`ENV`.
"""

from __future__ import annotations

import json
import os
from typing import Any

from flask_popaccounts.hooks import Hooks
from flask_popaccounts.storage.deliveries.lmtp import ImapReadBack, Lmtp
from flask_popaccounts.storage.deliveries.maildir import Maildir

ENV = "POPACCOUNTS_TEST_DELIVERY"


def maildir(root: str) -> dict[str, Any]:
    return {"kind": "maildir", "root": str(root)}


def lmtp(port: int, recipient: str, *, imaps_port: int | None, password: str
         ) -> dict[str, Any]:
    return {"kind": "lmtp", "port": port, "recipient": recipient, "imaps_port": imaps_port,
            "password": password}


def hooks_for(spec: dict[str, Any] | None) -> Hooks | None:
    """The host's hooks for ``spec`` (None: the built-in store)."""
    if spec is None:
        return None
    if spec["kind"] == "maildir":
        return Hooks(delivery=Maildir(spec["root"]))
    back = None
    if spec["imaps_port"] is not None:
        password = spec["password"]
        back = ImapReadBack("127.0.0.1", int(spec["imaps_port"]),
                            login=lambda rcpt: (rcpt, password))
    recipient = spec["recipient"]
    return Hooks(delivery=Lmtp("127.0.0.1", int(spec["port"]),
                               recipient=lambda owner, account: recipient, read_back=back))


def hooks_from_env() -> Hooks | None:
    raw = os.environ.get(ENV)
    return hooks_for(json.loads(raw)) if raw else None
