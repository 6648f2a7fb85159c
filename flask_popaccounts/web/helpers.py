"""Small helpers every route module of the blueprint shares (web layer)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from babel.numbers import format_decimal
from flask import abort, current_app, flash, get_flashed_messages, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup, escape
from sqlalchemy.orm import Session
from werkzeug.exceptions import NotFound
from werkzeug.routing import BuildError

from .. import i18n
from ..i18n import N_, isolate, ngettext
from ..i18n import gettext as _
from ..runtime import db_session
from .forms import FORMS

#: The answer to a button or form that fails its CSRF check (translated where shown).
FORM_EXPIRED = N_("The form expired or was not sent from this site. Reload and try again.")

#: A datum isolated by :func:`i18n.isolate` (FSI ... PDI), nothing isolated inside.
_ISOLATED = re.compile(f"{i18n.FSI}([^{i18n.FSI}{i18n.PDI}]*){i18n.PDI}")

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
        abort(400, _(FORM_EXPIRED))


def require_confirm() -> None:
    """A button that changes something (delete, enable, move, ...): CSRF, else 400."""
    require_valid(FORMS["confirm"]())


def delete_named(row: Any, delete: Callable[[Session, Any], None], message: str, endpoint: str,
                 account_id: int) -> ResponseReturnValue:
    """The delete button of a named row (a rule, a template): confirm, delete, say so.

    ``message`` is the sentence to flash, marked with ``N_`` and naming ``%(name)s``
    (``N_("Rule “%(name)s” deleted.")``)."""
    require_confirm()
    name = row.name
    delete(db_session(), row)
    flash(_(message, name=isolate(name)), "success")
    return redirect(url_for(endpoint, account_id=account_id))


# -- texts ------------------------------------------------------------------------------

def _sentence(text: object) -> str:
    """A translated text without its final full stop (to be put in a sentence)."""
    return _(str(text)).rstrip(". ")


def error_title(err: Any) -> str:
    """An engine or services error's title as a sentence, in the reader's language."""
    return _("%(title)s.", title=_sentence(err.title))


def explain(err: Any, *, message: bool = False) -> str:
    """An engine or services error as one paragraph in the reader's language: its title
    (``message=True``: the sentence it was raised with, a services text naming the case,
    else its title) and its help. ``PopAccountsError.explain()`` is the English one."""
    title = _sentence(err if message else err.title)
    help_text = _(str(err.help or ""))
    if not help_text:
        return _("%(title)s.", title=title)
    return _("%(title)s. %(help)s", title=title, help=help_text)


def isolated_markup(text: object) -> Markup:
    """A plain-text sentence (a flash) for a page: escaped, and each datum that
    :func:`i18n.isolate` wrapped becomes a ``<bdi>`` (what ``bdi()`` gives templates)."""
    if isinstance(text, Markup):
        return text
    parts = _ISOLATED.split(str(text))  # text, datum, text, datum, ..., text
    return Markup().join(i18n.bdi(part) if i % 2 else escape(part)
                         for i, part in enumerate(parts))


def flashed_messages(with_categories: bool = False,
                     category_filter: Iterable[str] = ()) -> list[Any]:
    """``get_flashed_messages`` for the blueprint's templates: the same messages, each
    isolated datum in ``<bdi>`` (see :func:`isolated_markup`)."""
    messages: list[Any] = list(get_flashed_messages(with_categories=with_categories,
                                                    category_filter=category_filter))
    if with_categories:
        return [(item[0], isolated_markup(item[1])) for item in messages]
    return [isolated_markup(text) for text in messages]


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
        # flashes name addresses and accounts isolated (FSI..PDI): shown in <bdi>
        "get_flashed_messages": flashed_messages,
        "popaccounts_isolated": isolated_markup,
        "popaccounts_mailbox_url": mailbox_url,
        "popaccounts_size": human_size,
        "popaccounts_allow_plaintext": bool(current_app.config.get("POPACCOUNTS_ALLOW_PLAINTEXT")),
    }


#: The units of :func:`human_size` (decimal: 1 KB = 1000 bytes).
_UNITS = (N_("%(size)s KB"), N_("%(size)s MB"), N_("%(size)s GB"))


def human_size(num: int | None) -> str:
    """1234567 -> '1.2 MB' (decimal units, as mail providers show quotas), in the
    reader's language and number format."""
    value = float(num or 0)
    if value < 1000:
        return ngettext("%(num)s byte", "%(num)s bytes", int(value))
    for unit in _UNITS:
        value /= 1000
        if value < 1000 or unit is _UNITS[-1]:
            break
    return _(unit, size=format_decimal(value, "#,##0.0", locale=i18n.current_locale()))
