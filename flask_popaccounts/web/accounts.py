"""The Mail Accounts pages: a blueprint the extension registers on the host app.

Every route needs a signed-in Flask-Login user and only ever sees that user's
accounts (``current_user.get_id()``); another user's account id is a 404, never a
403, so ids cannot be probed. The views talk to the services layer only
(``services.accounts``, ``services.fetching``), never to the engine.

Routes (under ``POPACCOUNTS_URL_PREFIX``, default ``/settings/mail-accounts``)::

    GET       /                          list of account cards            index
    GET       /add                       step 1: account type             add_type
    GET       /add/pop3                  step 2: provider                 add_provider
    GET       /add/pop3/oauth/<prov>     Outlook / Office 365 (OAuth)     add_oauth
    GET,POST  /add/pop3/<provider>       step 3: details, Test and save   add_account
    GET       /<id>/connected            step 4: connected (+ outgoing)   connected
    GET,POST  /<id>/edit                 edit (re-tests on new password)  edit
    GET,POST  /<id>/delete               confirmation, then delete        delete
    POST      /<id>/enable | /<id>/disable                               enable, disable
    POST      /<id>/default              make it the default account      set_default
    POST      /<id>/check                fetch now                        check_now

The cards' live progress (``/progress.json``) is :mod:`.progress`.

Templates live under ``popaccounts/`` and each can be overridden by the host.
Step 2's providers (ours and the host's own) are :mod:`.providers`'.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue

from ..engine.errors import PopAccountsError
from ..engine.types import AuthMethod, DeletePolicy, Security
from ..i18n import gettext as _
from ..i18n import isolate
from ..runtime import db_session, get_state
from . import providers as _p
from . import retrieval as _retrieval
from .forms import FORMS, AccountForm
from .helpers import explain, mailbox_url, require_confirm, require_valid
from .helpers import owned_account as _account
from .helpers import owner_id as _owner
from .helpers import this_app as _app
from .progress import card_live
from .providers import OAUTH_PROVIDERS

_CONNECTION_FIELDS = ("pop_host", "pop_port", "pop_security", "pop_username")


def register(bp: Blueprint) -> None:
    """The account pages' routes (the list, the wizard, edit, delete, check now)."""
    bp.add_url_rule("/", "index", index)
    bp.add_url_rule("/add", "add_type", add_type)
    bp.add_url_rule("/add/pop3", "add_provider", add_provider)
    bp.add_url_rule("/add/pop3/oauth/<provider>", "add_oauth", add_oauth)
    bp.add_url_rule("/add/pop3/<provider>", "add_account", add_account, methods=["GET", "POST"])
    bp.add_url_rule("/<int:account_id>/connected", "connected", connected)
    bp.add_url_rule("/<int:account_id>/edit", "edit", edit, methods=["GET", "POST"])
    bp.add_url_rule("/<int:account_id>/delete", "delete", delete, methods=["GET", "POST"])
    bp.add_url_rule("/<int:account_id>/enable", "enable", enable, methods=["POST"])
    bp.add_url_rule("/<int:account_id>/disable", "disable", disable, methods=["POST"])
    bp.add_url_rule("/<int:account_id>/default", "set_default", set_default, methods=["POST"])
    bp.add_url_rule("/<int:account_id>/check", "check_now", check_now, methods=["POST"])


def _form_to_input(form: AccountForm, provider: str) -> Any:
    from ..services.accounts import AccountInput

    email = form.email.data.strip()
    days = int(form.delete_after_days.data or 0)
    policy = DeletePolicy(form.delete_policy.data)
    return AccountInput(
        email=email,
        name=form.name.data.strip(),
        send_from=(form.send_from.data or "").strip() or email,
        reply_to=(form.reply_to.data or "").strip(),
        is_default=bool(form.is_default.data),
        provider=provider,
        pop_host=form.pop_host.data,
        pop_port=int(form.pop_port.data),
        pop_security=Security(form.pop_security.data),
        pop_username=form.pop_username.data.strip(),
        password=form.password.data or None,
        delete_policy=policy,
        delete_after_days=days if policy is DeletePolicy.AFTER_DAYS else 0,
        fetch_interval_minutes=int(form.fetch_interval_minutes.data),
        **_retrieval.input_values(form),
    )


def _account_data(account: Any) -> dict[str, Any]:
    """The form's initial values from a stored account (never the secret)."""
    def val(v: Any) -> Any:
        return getattr(v, "value", v)

    return {
        "email": account.email,
        "name": account.name,
        "send_from": account.send_from,
        "reply_to": account.reply_to,
        "is_default": account.is_default,
        "pop_host": account.pop_host,
        "pop_port": account.pop_port,
        "pop_security": val(account.pop_security),
        "pop_username": account.pop_username,
        "delete_policy": val(account.delete_policy),
        "delete_after_days": account.delete_after_days or 7,
        "fetch_interval_minutes": str(account.fetch_interval_minutes),
        **_retrieval.initial_values(account),
    }


def _local_path(target: str) -> bool:
    """A same-site path to redirect to (not //host, /\\host or a scheme)."""
    return (target.startswith("/") and not target.startswith(("//", "/\\"))
            and not any(ch in target for ch in "\r\n\t"))


def _fail_page(form: AccountForm, template: str, error: PopAccountsError | None,
               status: int, **ctx: Any) -> ResponseReturnValue:
    # A refusal that belongs to one field (the address is an account already, a new
    # server needs the password again) is shown on that field, like a validation error.
    target = getattr(form, str(getattr(error, "field", "") or ""), None)
    if error is not None and target is not None:
        target.errors = [*target.errors, explain(error, message=True)]
        error = None
    # The password is never echoed back: PasswordField hides it, and we drop it too.
    form.password.data = ""
    form.password.raw_data = []
    return render_template(template, form=form, test_error=error, **ctx), status


# -- pages ------------------------------------------------------------------------------

def index() -> ResponseReturnValue:
    from ..services import health
    from ..services import progress as progress_svc
    from ..services import quota as quota_svc
    from ..storage.mailbox import storage_used

    session = db_session()
    owner = _owner()
    used = storage_used(session, owner)
    now = get_state(_app()).clock()
    cards = []
    for account, info in progress_svc.owner_fetches(_app(), session, owner):
        cards.append({
            "account": account,
            "status": health.status_view(account),
            "live": card_live(account, info, now),  # the bar as of page load (no JS)
            "mailbox_url": mailbox_url(account.id),
            "storage": used.get(account.id, account.bytes_stored),
        })
    return render_template(
        "popaccounts/index.html",
        cards=cards, oauth_switchable=_oauth_switchable(cards),
        storage_used=sum(used.values()),
        quota=quota_svc.quota_for(_app(), owner),
        confirm_form=FORMS["confirm"](),
    )


def add_type() -> ResponseReturnValue:
    return render_template("popaccounts/add_type.html")


def add_provider() -> ResponseReturnValue:
    return render_template("popaccounts/add_provider.html", providers=_p.providers(),
                           extra_providers=_p.extra_providers(current_app.config),
                           oauth_providers=OAUTH_PROVIDERS)


def add_oauth(provider: str) -> ResponseReturnValue:
    if provider not in OAUTH_PROVIDERS:
        abort(404)
    return render_template("popaccounts/add_oauth.html", provider=provider,
                           provider_label=OAUTH_PROVIDERS[provider])


def add_account(provider: str) -> ResponseReturnValue:
    from ..services import accounts as svc

    if provider in OAUTH_PROVIDERS:
        return redirect(url_for(".add_oauth", provider=provider))
    preset = _p.providers().get(provider)
    if preset is None:
        abort(404)
    fixed = _p.fixed_server(preset)
    form_cls = FORMS["account"]
    if request.method == "GET":
        form = form_cls(data={k: preset[k] for k in _p.PREFILL if preset.get(k)},
                        password_required=not fixed)
    else:
        form = form_cls(password_required=not fixed)
    ctx: dict[str, Any] = {"provider": provider, "provider_label": preset["label"],
                           "provider_description": preset.get("description") or "",
                           "fixed_server": fixed, "mode": "add",
                           **_retrieval.setup(form, None)}
    if not form.validate_on_submit():
        status = 400 if form.is_submitted() else 200
        return _fail_page(form, "popaccounts/account_form.html", None, status, **ctx)

    data = _p.apply_fixed_server(preset, _form_to_input(form, provider))
    _retrieval.check(data, None)  # (a 404 before any server is contacted)
    try:
        svc.check_input(data)
        svc.check_address_free(db_session(), _owner(), data.email)
        svc.test_incoming(_app(), data)
    except PopAccountsError as exc:
        current_app.logger.info("popaccounts: incoming test failed for owner %s: %s (%s)",
                                _owner(), exc.code, exc.detail)
        return _fail_page(form, "popaccounts/account_form.html", exc, 422, **ctx)

    session = db_session()
    try:
        account = svc.create_account(_app(), session, _owner(), data)
        session.commit()
    except PopAccountsError as exc:
        session.rollback()
        return _fail_page(form, "popaccounts/account_form.html", exc, 422, **ctx)
    return redirect(url_for(".connected", account_id=account.id))


def connected(account_id: int) -> ResponseReturnValue:
    account = _account(account_id)
    return render_template("popaccounts/connected.html", account=account,
                           mailbox_url=mailbox_url(account.id),
                           confirm_form=FORMS["confirm"]())


def edit(account_id: int) -> ResponseReturnValue:
    from ..services import accounts as svc
    from ..storage.models import AccountStatus, value_of

    account = _account(account_id)
    form_cls = FORMS["account"]
    if request.method == "GET":
        form = form_cls(data=_account_data(account), password_required=False)
    else:
        form = form_cls(password_required=False)
    form.submit.label.text = _("Test and save")
    ctx: dict[str, Any] = {"account": account, "provider": account.provider,
                           "provider_label": _p.providers().get(account.provider, {}).get(
                               "label", account.provider),
                           "mode": "edit",
                           "needs_password": account.status == AccountStatus.NEEDS_PASSWORD,
                           "oauth": value_of(account.auth_method) == AuthMethod.XOAUTH2.value,
                           **_retrieval.setup(form, account)}
    if not form.validate_on_submit():
        status = 400 if form.is_submitted() else 200
        return _fail_page(form, "popaccounts/account_form.html", None, status, **ctx)

    data = _form_to_input(form, account.provider)
    if ctx["oauth"]:
        data.password = None  # the field is not shown: the token set stays as it is
    new_password = data.password is not None
    old = _account_data(account)
    changed = new_password or any(
        str(old[f]) != str(getattr(data, f).value if f == "pop_security" else getattr(data, f))
        for f in _CONNECTION_FIELDS
    )
    _retrieval.check(data, account)  # (a 404 before any server is contacted)
    try:
        svc.check_input(data)
        svc.check_address_free(db_session(), _owner(), data.email, account.id)
        if changed:
            svc.test_incoming(_app(), data, existing=account)
    except PopAccountsError as exc:
        return _fail_page(form, "popaccounts/account_form.html", exc, 422, **ctx)

    session = db_session()
    try:
        svc.update_account(_app(), session, account, data)
        if new_password and not account.enabled:
            svc.set_enabled(_app(), session, account, True)  # R7: new password -> enabled again
        session.commit()
    except PopAccountsError as exc:
        session.rollback()
        return _fail_page(form, "popaccounts/account_form.html", exc, 422, **ctx)
    flash(_("Saved the settings of %(address)s.", address=isolate(account.email)), "success")
    return redirect(url_for(".index"))


def delete(account_id: int) -> ResponseReturnValue:
    from ..services import accounts as svc

    account = _account(account_id)
    form = FORMS["confirm"]()
    if request.method == "POST":
        require_valid(form)
        email = account.email
        session = db_session()
        svc.delete_account(_app(), session, account)  # (also revokes an OAuth grant)
        session.commit()
        flash(_("Removed %(address)s and the mail stored from it.", address=isolate(email)),
              "success")
        return redirect(url_for(".index"))
    return render_template("popaccounts/delete.html", account=account, form=form)


def _set_enabled(account_id: int, enabled: bool) -> ResponseReturnValue:
    from ..services import accounts as svc

    account = _account(account_id)
    require_confirm()
    session = db_session()
    svc.set_enabled(_app(), session, account, enabled)
    session.commit()
    flash(_("%(address)s is enabled.", address=isolate(account.email)) if enabled else
          _("%(address)s is disabled.", address=isolate(account.email)), "success")
    return redirect(url_for(".index"))


def enable(account_id: int) -> ResponseReturnValue:
    return _set_enabled(account_id, True)


def disable(account_id: int) -> ResponseReturnValue:
    return _set_enabled(account_id, False)


def set_default(account_id: int) -> ResponseReturnValue:
    from ..services import accounts as svc

    account = _account(account_id)
    require_confirm()
    session = db_session()
    svc.set_default(session, account)
    session.commit()
    flash(_("%(address)s is now your default account.", address=isolate(account.email)),
          "success")
    return redirect(url_for(".index"))


def _oauth_switchable(cards: list[dict[str, Any]]) -> frozenset[str]:
    """Providers a password account may switch to OAuth with on this site (configured).

    Asked only when a card offers the switch (a refused password): the OAuth stack
    (Authlib, requests) stays unloaded for the usual page.
    """
    from ..storage.models import AccountStatus

    if not any(c["account"].status == AccountStatus.NEEDS_PASSWORD for c in cards):
        return frozenset()
    from ..services import oauth

    return frozenset(k for k, p in oauth.providers(_app()).items() if p.configured)


def check_now(account_id: int) -> ResponseReturnValue:
    from ..services import fetching, health, scheduling

    account = _account(account_id)
    require_confirm()
    started = fetching.check_now(_app(), account.id)
    waiting = not started and scheduling.waits_for_user(account)
    address = isolate(account.email)
    if started:
        message = _("Checking %(address)s for new mail.", address=address)
    elif waiting:
        # Say why nothing happens: it waits for the user, not for another check.
        message = _("%(address)s was not checked: %(status)s.", address=address,
                    status=health.status_view(account).label)
    else:
        message = _("%(address)s is already being checked.", address=address)
    if request.accept_mimetypes.best == "application/json":
        return jsonify({"started": bool(started), "waits_for_user": waiting,
                        "message": message})
    flash(message, "info")
    target = request.form.get("next") or ""
    if _local_path(target):
        return redirect(target)
    return redirect(url_for(".index"))
