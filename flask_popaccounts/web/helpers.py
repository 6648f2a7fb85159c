"""Small helpers every route module of the blueprint shares (web layer)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import abort, current_app, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from werkzeug.exceptions import NotFound
from werkzeug.routing import BuildError

from .. import i18n
from ..runtime import db_session
from .forms import FORMS

#: The answer to a button or form that fails its CSRF check.
FORM_EXPIRED = "The form expired or was not sent from this site. Reload and try again."

_Row = TypeVar("_Row")


def owner_id() -> str:
    """The signed-in user's id, as the extension stores owners."""
    return str(current_user.get_id())


def this_app() -> Any:
    """The real app object (for services that run outside this request too)."""
    return current_app._get_current_object()  # type: ignore[attr-defined]


def owned_account(account_id: int) -> Any:
    """The signed-in user's account, or 404 (also for other users' ids: the service
    raises NotFound for both)."""
    from ..services import accounts as svc

    return svc.get_owned_account(db_session(), owner_id(), account_id)


def or_404(row: _Row | None) -> _Row:
    """A row the services looked up within the user's own data, or 404 when there is none."""
    if row is None:
        raise NotFound()
    return row


def require_valid(form: FlaskForm) -> None:
    """Stop with a 400 unless ``form`` was posted from our own page and validates."""
    if not form.validate_on_submit():
        abort(400, FORM_EXPIRED)


def require_confirm() -> None:
    """A button that changes something (delete, enable, move, ...): CSRF, else 400."""
    require_valid(FORMS["confirm"]())


def delete_named(row: Any, delete: Callable[[Session, Any], None], what: str, endpoint: str,
                 account_id: int) -> ResponseReturnValue:
    """The delete button of a named row (a rule, a template): confirm, delete, say so."""
    require_confirm()
    name = row.name
    delete(db_session(), row)
    flash(f"{what} “{name}” deleted.", "success")
    return redirect(url_for(endpoint, account_id=account_id))


# -- the blueprint's plumbing -----------------------------------------------------------

def require_login() -> ResponseReturnValue | None:
    """Every page but the static files needs a signed-in user (the host's login view)."""
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
    """What the blueprint's templates may call besides ``popaccounts_url``: the
    extension's own ``_``/``ngettext`` (domain popaccounts, see ``i18n``), ``bdi``..."""
    return {
        **i18n.template_globals(),
        "popaccounts_mailbox_url": mailbox_url,
        "popaccounts_size": human_size,
        "popaccounts_allow_plaintext": bool(current_app.config.get("POPACCOUNTS_ALLOW_PLAINTEXT")),
    }


def human_size(num: int | None) -> str:
    """1234567 -> '1.2 MB' (decimal units, as mail providers show quotas)."""
    value = float(num or 0)
    if value < 1000:
        return f"{int(value)} bytes"
    for unit in ("KB", "MB"):
        value /= 1000
        if value < 1000:
            return f"{value:.1f} {unit}"
    return f"{value / 1000:.1f} GB"
