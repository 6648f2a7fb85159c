"""Small helpers every route module of the blueprint shares (web layer)."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from werkzeug.exceptions import NotFound
from werkzeug.routing import BuildError

from ..runtime import db_session


def owner_id() -> str:
    """The signed-in user's id, as the extension stores owners."""
    return str(current_user.get_id())


def this_app() -> Any:
    """The real app object (for services that run outside this request too)."""
    return current_app._get_current_object()  # type: ignore[attr-defined]


def owned_account(account_id: int) -> Any:
    """The signed-in user's account, or 404 (also for other users' ids)."""
    from ..services import accounts as svc

    try:
        account = svc.get_owned_account(db_session(), owner_id(), account_id)
    except (LookupError, PermissionError):
        raise NotFound() from None
    if account is None:
        raise NotFound()
    return account


# -- the blueprint's plumbing -----------------------------------------------------------

def require_login() -> ResponseReturnValue | None:
    if request.endpoint and request.endpoint.endswith(".static"):
        return None
    if not current_user.is_authenticated:
        manager = getattr(current_app, "login_manager", None)
        if manager is None:
            abort(401)
        return manager.unauthorized()
    return None


def mailbox_url(account_id: int) -> str | None:
    """The host's mailbox page for one account (R8), or None if the host has none."""
    endpoint = current_app.config.get("POPACCOUNTS_MAILBOX_ENDPOINT")
    if not endpoint:
        return None
    try:
        return url_for(endpoint, account_id=account_id)
    except BuildError:
        return None


def template_helpers() -> dict[str, Any]:
    return {
        "popaccounts_mailbox_url": mailbox_url,
        "popaccounts_size": human_size,
        "popaccounts_allow_plaintext": bool(current_app.config.get("POPACCOUNTS_ALLOW_PLAINTEXT")),
    }


def human_size(num: int | None) -> str:
    """1234567 -> '1.2 MB' (decimal units, as mail providers show quotas)."""
    value = float(num or 0)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover


