"""Small helpers every route module of the blueprint shares (web layer)."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_login import current_user
from werkzeug.exceptions import NotFound

from .extension import db_session


def owner_id() -> str:
    """The signed-in user's id, as the extension stores owners."""
    return str(current_user.get_id())


def this_app() -> Any:
    """The real app object (for services that run outside this request too)."""
    return current_app._get_current_object()  # type: ignore[attr-defined]


def owned_account(account_id: int) -> Any:
    """The signed-in user's account, or 404 (also for other users' ids)."""
    from .services import accounts as svc

    try:
        account = svc.get_owned_account(db_session(), owner_id(), account_id)
    except (LookupError, PermissionError):
        raise NotFound() from None
    if account is None:
        raise NotFound()
    return account
