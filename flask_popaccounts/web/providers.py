"""The providers the wizard offers in step 2: ours, and the host's own.

:data:`PROVIDERS` (Gmail, Other) prefill the password form; :data:`OAUTH_PROVIDERS` sign
in with OAuth. A host adds its own servers with ``POPACCOUNTS_EXTRA_PROVIDERS`` (a demo
mailbox, the company's POP3 server; :func:`extra_providers`): they are offered first,
with their settings filled in, and when the host gives the password too, the server is
fixed (that password goes to that server only) and the password is never shown nor
asked for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import current_app

from ..engine.types import Security
from ..i18n import lazy_gettext

#: Providers offered in step 2, with what the form is prefilled with (brand names stay as
#: they are, "Other provider" is translated when shown).
PROVIDERS: dict[str, dict[str, Any]] = {
    "gmail": {"label": "Gmail", "pop_host": "pop.gmail.com", "pop_port": 995,
              "pop_security": Security.SSL.value},
    "other": {"label": lazy_gettext("Other provider"), "pop_host": "", "pop_port": 995,
              "pop_security": Security.SSL.value},
}
OAUTH_PROVIDERS: dict[str, str] = {"outlook": "Outlook.com", "office365": "Office 365"}

#: What a host-registered provider may say (POPACCOUNTS_EXTRA_PROVIDERS); the form is
#: prefilled with the ``pop_*``, ``email`` and ``name`` values.
_PROVIDER_KEYS = {"label", "description", "pop_host", "pop_port", "pop_security",
                  "pop_username", "email", "name", "password"}
_PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")  # the account's provider column
PREFILL = ("email", "name", "pop_host", "pop_port", "pop_security", "pop_username")


def extra_providers(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The host's own providers (``POPACCOUNTS_EXTRA_PROVIDERS``), checked, in order.

    Each is ``{"label": .., "pop_host": .., "pop_port": .., "pop_security": "ssl" |
    "starttls" | "plain"}`` plus optional ``description``, ``pop_username``, ``email``,
    ``name`` and ``password``. Raises ``ValueError`` on a malformed one (init_app
    calls this, so a typo fails the start-up).
    """
    out: dict[str, dict[str, Any]] = {}
    for key, entry in dict(config.get("POPACCOUNTS_EXTRA_PROVIDERS") or {}).items():
        where = f"POPACCOUNTS_EXTRA_PROVIDERS[{key!r}]"
        if not isinstance(key, str) or not _PROVIDER_NAME.match(key):
            raise ValueError(f"{where}: a provider's key is 1-32 of a-z, 0-9, '-', '_'")
        if key in PROVIDERS or key in OAUTH_PROVIDERS:
            raise ValueError(f"{where}: {key!r} is a built-in provider")
        unknown = set(entry) - _PROVIDER_KEYS
        missing = {"label", "pop_host", "pop_port"} - set(entry)
        if unknown or missing:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}, missing {sorted(missing)}")
        item = {"description": "", "pop_username": "", "email": "", "name": "",
                "password": None, **entry}
        if item["password"] and not item["pop_username"]:
            raise ValueError(f"{where}: a provider with a password needs its pop_username")
        item["pop_port"] = int(item["pop_port"])
        item["pop_security"] = Security(item.get("pop_security", Security.SSL.value)).value
        out[key] = item
    return out


def providers() -> dict[str, dict[str, Any]]:
    """Every provider a password account may be added with: the host's, then ours."""
    return {**extra_providers(current_app.config), **PROVIDERS}


def fixed_server(preset: Mapping[str, Any]) -> bool:
    """A provider whose password the host gives: its server is not the user's to change
    (that password goes to that server only)."""
    return bool(preset.get("password"))


def apply_fixed_server(preset: Mapping[str, Any], data: Any) -> Any:
    """``data`` (an AccountInput) with a fixed-server provider's server and password,
    whatever was posted: the host's password goes to the host's server only."""
    if fixed_server(preset):
        data.pop_host, data.pop_port = preset["pop_host"], preset["pop_port"]
        data.pop_security = Security(preset["pop_security"])
        data.pop_username = preset["pop_username"] or data.pop_username
        data.password = str(preset["password"])
    return data
