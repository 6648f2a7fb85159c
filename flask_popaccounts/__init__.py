"""flask-popaccounts: bring outside POP3 mailboxes into any Flask webmail.

Importing the package is cheap and pure: the Flask parts load on first use, so that
``flask_popaccounts.engine`` can be imported (and tested) without Flask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Hooks", "PopAccounts", "__version__", "db_session", "get_state"]

if TYPE_CHECKING:
    from .extension import PopAccounts
    from .hooks import Hooks
    from .runtime import db_session, get_state


def __getattr__(name: str) -> Any:
    if name == "PopAccounts":
        from .extension import PopAccounts

        return PopAccounts
    if name == "Hooks":
        from .hooks import Hooks

        return Hooks
    if name in ("db_session", "get_state"):
        from . import runtime

        return getattr(runtime, name)
    raise AttributeError(name)
