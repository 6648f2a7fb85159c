"""OAuth pages for Outlook.com / Office 365 (R12, R13), on the Mail Accounts blueprint.

:func:`register` is called by :func:`.blueprint.create_blueprint`::

    GET       /add/pop3/oauth/<prov>            the wizard step (views.add_oauth renders
                                                popaccounts/add_oauth.html with our form)
    POST      /add/pop3/oauth/<prov>/start      address + delete option -> provider sign-in
    GET       /oauth/callback                   the provider sends the user back here
    POST      /<id>/oauth/authenticate          re-authenticate an account (R13)
    GET,POST  /<id>/oauth/switch                switch a password account to OAuth

The sign-in runs in a pop-up window when the browser allows one: ``oauth.js`` opens
it and submits the form into it; the callback's page (``oauth_done.html``) posts the
result to the opener (same origin only) and closes itself, and the wizard updates.
When pop-ups are blocked the same form submits in the page itself and the callback
answers with an ordinary redirect. What the callback must check (state, PKCE verifier,
nonce, who started it) waits in the signed session, keyed by ``state``, as Authlib's
own Flask client keeps it.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, IntegerField, StringField
from wtforms.validators import Length, Optional

from ..engine.errors import PopAccountsError
from ..engine.types import DeletePolicy
from ..i18n import gettext as _
from ..i18n import isolate, lazy_gettext
from ..runtime import db_session, get_state
from .forms import (
    FORMS,
    RetrievalFields,
    _days_when_needed,
    address_field,
    delete_policy_field,
    no_control_chars,
)
from .helpers import error_title, isolated_markup, require_valid
from .helpers import owner_id as _owner
from .helpers import this_app as _app

_PENDING = "popaccounts_oauth"
_PENDING_MAX = 5  #: sign-ins a user may have open at once
_PENDING_SECONDS = 15 * 60


class OAuthAccountForm(FlaskForm, RetrievalFields):
    """The OAuth wizard step: the address, the retrieval settings and the delete option
    (R12), no password. (A new account has no folder of its own to choose yet.)"""

    email = address_field(lazy_gettext("Email address"), required=True)
    name = StringField(lazy_gettext("Account name"),
                       description=lazy_gettext("Shown in the side pane. Leave empty to use "
                                                "the address."),
                       validators=[Optional(), Length(max=200), no_control_chars])
    delete_policy = delete_policy_field()
    delete_after_days = IntegerField(lazy_gettext("Days"), default=7,
                                     validators=[_days_when_needed])
    is_default = BooleanField(lazy_gettext("Set this as the default account"))
    popup = HiddenField()


class OAuthStartForm(FlaskForm):
    """Re-authenticate / switch: only the CSRF token and the pop-up flag."""

    popup = HiddenField()
    provider = HiddenField()


FORMS.setdefault("oauth_account", OAuthAccountForm)
FORMS.setdefault("oauth_start", OAuthStartForm)


def register(bp: Blueprint) -> None:
    """Add the OAuth routes and template helpers to the Mail Accounts blueprint."""
    bp.add_url_rule("/add/pop3/oauth/<provider>/start", "oauth_start", oauth_start,
                    methods=["POST"])
    bp.add_url_rule("/oauth/callback", "oauth_callback", oauth_callback)
    bp.add_url_rule("/<int:account_id>/oauth/authenticate", "oauth_reauth", oauth_reauth,
                    methods=["POST"])
    bp.add_url_rule("/<int:account_id>/oauth/switch", "oauth_switch", oauth_switch,
                    methods=["GET", "POST"])
    bp.context_processor(_oauth_helpers)


# -- helpers ------------------------------------------------------------------------------


def _oauth() -> Any:
    from ..services import oauth

    return oauth


def _provider(key: str) -> Any:
    """The provider (configured or not) or 404 for an unknown key."""
    provider = _oauth().providers(_app()).get(key)
    if provider is None:
        abort(404)
    return provider


def _oauth_helpers() -> dict[str, Any]:
    def new_form() -> Any:
        return FORMS["oauth_account"]()

    def start_form() -> Any:
        return FORMS["oauth_start"]()

    def provider(key: str) -> Any:
        return _oauth().providers(_app()).get(key)

    return {"popaccounts_oauth_form": new_form, "popaccounts_oauth_start_form": start_form,
            "popaccounts_oauth_provider": provider}


def _redirect_uri() -> str:
    fixed = current_app.config.get("POPACCOUNTS_OAUTH_REDIRECT_URI")
    return str(fixed) if fixed else url_for(".oauth_callback", _external=True)


def _pending() -> dict[str, dict[str, Any]]:
    now = get_state().clock().timestamp()
    items = session.get(_PENDING) or {}
    return {k: v for k, v in items.items()
            if isinstance(v, dict) and now - float(v.get("at", 0)) < _PENDING_SECONDS}


def _begin(provider_key: str, *, mode: str, popup: bool, login_hint: str,
           account_id: int | None = None, data: dict[str, Any] | None = None
           ) -> ResponseReturnValue:
    """Remember what the callback must check, then send the user to the provider."""
    req = _oauth().begin_authorization(_app(), provider_key, _redirect_uri(),
                                       login_hint=login_hint or None)
    pending = _pending()
    while len(pending) >= _PENDING_MAX:  # drop the oldest
        pending.pop(min(pending, key=lambda k: float(pending[k].get("at", 0))))
    pending[req.state] = {
        "at": get_state().clock().timestamp(), "owner": _owner(), "provider": provider_key,
        "mode": mode, "account_id": account_id, "popup": bool(popup), "verifier": req.code_verifier,
        "nonce": req.nonce, "email": login_hint, "data": data or {},
    }
    session[_PENDING] = pending
    return redirect(req.url)


def _finish(*, ok: bool, popup: bool, message: str, next_url: str,
            error: PopAccountsError | None = None, status: int = 200,
            retry_url: str | None = None) -> ResponseReturnValue:
    """The end of a sign-in: the pop-up's closing page, or a redirect / error page."""
    if ok and not popup:
        flash(message, "success")
        return redirect(next_url)
    result = {"type": "popaccounts-oauth", "ok": ok, "message": message,
              "redirect": next_url if ok else None}
    return render_template("popaccounts/oauth_done.html", ok=ok, popup=popup,
                           message=isolated_markup(message), error=error, next_url=next_url,
                           result=result,
                           retry_url=retry_url), status


# -- pages --------------------------------------------------------------------------------

def oauth_start(provider: str) -> ResponseReturnValue:
    """The wizard's Authenticate button: validate address + delete option, then sign in."""
    prov = _provider(provider)
    form = FORMS["oauth_account"]()
    if not prov.configured or not form.validate_on_submit():
        return render_template("popaccounts/add_oauth.html", provider=provider,
                               provider_label=prov.label, form=form), 400
    data = {"name": (form.name.data or "").strip(),
            "delete_policy": form.delete_policy.data,
            "delete_after_days": int(form.delete_after_days.data or 0),
            "is_default": bool(form.is_default.data),
            "deliver_to": form.deliver_to.data, "mark_read": bool(form.mark_read.data),
            "first_import": form.first_import.data}
    if data["deliver_to"] == "folder":
        abort(404)  # no folder of its own yet: any folder id is another account's
    return _begin(provider, mode="add", popup=form.popup.data == "1",
                  login_hint=form.email.data.strip(), data=data)


def _oauth_input(data: dict[str, Any]) -> Any:
    """What the wizard's start form collected, kept across the sign-in."""
    from ..services import accounts

    return accounts.OAuthAccountInput(
        name=str(data.get("name") or ""),
        delete_policy=DeletePolicy(data.get("delete_policy") or "keep"),
        delete_after_days=int(data.get("delete_after_days") or 0),
        is_default=bool(data.get("is_default")), deliver_to=str(data.get("deliver_to") or "inbox"),
        mark_read=bool(data.get("mark_read")), first_import=str(data.get("first_import") or "all"))


def oauth_reauth(account_id: int) -> ResponseReturnValue:
    """The card's Authenticate button (R13): the same sign-in for an existing account."""
    from .helpers import owned_account as _account

    account = _account(account_id)
    form = FORMS["oauth_start"]()
    require_valid(form)
    provider = account.provider if account.provider in _oauth().providers(_app()) else None
    if provider is None or not _provider(provider).configured:
        flash(_("Sign-in with this account's provider is not set up on this site."), "error")
        return redirect(url_for(".index"))
    return _begin(provider, mode="reauth", popup=form.popup.data == "1",
                  login_hint=account.email, account_id=account.id)


def oauth_switch(account_id: int) -> ResponseReturnValue:
    """Switch a password account to OAuth (its provider stopped accepting passwords)."""
    from .helpers import owned_account as _account

    account = _account(account_id)
    choices = {k: p for k, p in _oauth().providers(_app()).items() if p.configured}
    form = FORMS["oauth_start"]()
    if request.method == "POST":
        require_valid(form)
        if form.provider.data not in choices:
            abort(400, _("Choose a provider."))
        return _begin(form.provider.data, mode="switch", popup=form.popup.data == "1",
                      login_hint=account.email, account_id=account.id)
    return render_template("popaccounts/oauth_switch.html", account=account,
                           providers=choices, form=form)


def oauth_callback() -> ResponseReturnValue:
    """The provider's answer: exchange the code, test POP3 with the token, save."""
    from ..services import accounts

    oauth = _oauth()
    state = request.args.get("state", "")
    pending = _pending()
    item = pending.pop(state, None)
    session[_PENDING] = pending
    if item is None or item.get("owner") != _owner():
        return _finish(ok=False, popup=False, status=400,
                       message=_("This sign-in expired or was started elsewhere. Start again."),
                       next_url=url_for(".index"))
    popup = bool(item["popup"])
    provider_key = str(item["provider"])
    mode = str(item["mode"])
    account = None
    if mode in ("reauth", "switch"):
        from .helpers import owned_account as _account

        account = _account(int(item["account_id"]))
        retry_url = (url_for(".index") if mode == "reauth"
                     else url_for(".oauth_switch", account_id=account.id))
    else:
        retry_url = url_for(".add_oauth", provider=provider_key)

    def fail(message: str, error: PopAccountsError | None = None,
             status: int = 422) -> ResponseReturnValue:
        return _finish(ok=False, popup=popup, message=message, error=error, status=status,
                       next_url=retry_url, retry_url=retry_url)

    if request.args.get("error"):
        if request.args["error"] == "access_denied":
            return fail(_("You cancelled the sign-in, so nothing was changed."))
        return fail(_("The provider did not grant access, so nothing was changed."))
    try:
        grant = oauth.complete_authorization(
            _app(), provider_key, _redirect_uri(), authorization_response=request.url,
            state=state, code_verifier=str(item["verifier"]), nonce=str(item["nonce"]))
    except PopAccountsError as exc:
        current_app.logger.info("popaccounts: OAuth sign-in failed for owner %s: %s (%s)",
                                _owner(), exc.code, exc.detail)
        return fail(error_title(exc), exc)

    expected = account.email if account is not None else str(item.get("email") or "")
    if expected and not oauth.same_address(expected, grant.email):
        return fail(_("You signed in as %(signed_in)s, but this is for %(expected)s. "
                      "Sign in with that account instead.", signed_in=isolate(grant.email),
                      expected=isolate(expected)))
    try:
        oauth.test_login(_app(), provider_key, grant)
    except PopAccountsError as exc:
        current_app.logger.info("popaccounts: OAuth POP3 test failed for owner %s: %s (%s)",
                                _owner(), exc.code, exc.detail)
        return fail(error_title(exc), exc)

    db = db_session()
    if account is None:
        try:
            new = accounts.create_oauth_account(_app(), db, _owner(), provider_key, grant,
                                                _oauth_input(item.get("data") or {}))
        except PopAccountsError as exc:  # e.g. the address is an account already
            db.rollback()
            return fail(_(str(exc)), exc)
        return _finish(ok=True, popup=popup,
                       message=_("%(address)s is connected.", address=isolate(new.email)),
                       next_url=url_for(".connected", account_id=new.id))
    accounts.authorize_account(_app(), db, account, provider_key, grant)
    address = isolate(account.email)
    if mode == "reauth":
        message = _("%(address)s re-authenticated; fetching resumes.", address=address)
    else:
        message = _("%(address)s now signs in with OAuth; fetching resumes.", address=address)
    return _finish(ok=True, popup=popup, message=message,
                   next_url=url_for(".index"))
