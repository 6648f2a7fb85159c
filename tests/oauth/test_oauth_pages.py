"""The OAuth pages end to end with the test client: add an Outlook account (pop-up and
redirect fallback), PKCE/state, cancelled and foreign sign-ins, Gmail's preset page,
an unconfigured provider, and switching a password account to OAuth (R3, R12-R14)."""

from __future__ import annotations

import json
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient

from flask_popaccounts import get_state
from flask_popaccounts.engine.types import AuthMethod, Security
from flask_popaccounts.services import fetching
from flask_popaccounts.services.accounts import AccountInput, create_account
from flask_popaccounts.storage.models import Account, AccountStatus
from tests.conftest import fresh_source_address
from tests.support.authserver import AuthServer
from tests.support.dovecot import Dovecot
from tests.web.conftest import login

from .conftest import PREFIX, MsUser, mail
from .flow import add_form, callback, popup_result, query, sign_in, start


def accounts(app: Flask) -> list[Account]:
    with get_state(app).session_factory() as s:
        return list(s.query(Account).order_by(Account.id))


def token_of(app: Flask, account: Account) -> dict[str, object]:
    assert account.secret_enc is not None
    data: dict[str, object] = json.loads(get_state(app).secrets.decrypt(account.secret_enc))
    return data


def test_wizard_offers_outlook_and_office365(client: FlaskClient) -> None:
    page = client.get(f"{PREFIX}/add/pop3").text
    assert "Outlook.com" in page and "Office 365" in page
    page = client.get(f"{PREFIX}/add/pop3/oauth/outlook").text
    assert "Authenticate" in page and 'data-pa-oauth' in page
    assert "Email address" in page and "Delete emails from the server" in page
    assert "Password" not in page  # R12: no password


def test_add_outlook_account_in_popup_then_fetch_over_xoauth2(
        oauth_app: Flask, client: FlaskClient, authsrv: AuthServer, oauth_dovecot: Dovecot,
        ms_user: MsUser) -> None:
    oauth_dovecot.deliver(ms_user.email, mail("Over XOAUTH2", 1))
    url = start(client, f"{PREFIX}/add/pop3/oauth/outlook/start", add_form(ms_user, popup="1"))
    q = query(url)
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) >= 43
    assert q["state"] and q["nonce"] and q["login_hint"] == ms_user.email
    assert set(q["scope"].split()) == {
        "https://outlook.office.com/POP.AccessAsUser.All",
        "https://outlook.office.com/SMTP.Send", "offline_access", "openid", "email"}
    assert "code_verifier" not in url

    resp = callback(client, authsrv.consent(url, ms_user.username, ms_user.password))
    assert resp.status_code == 200, resp.text
    result = popup_result(resp)
    [account] = accounts(oauth_app)
    assert result == {"type": "popaccounts-oauth", "ok": True,
                      "message": f"\u2068{ms_user.email}\u2069 is connected.",
                      "redirect": f"{PREFIX}/{account.id}/connected"}
    assert account.auth_method == AuthMethod.XOAUTH2.value
    assert account.provider == "outlook" and account.pop_username == ms_user.email
    assert account.name == "Outlook mail"
    token = token_of(oauth_app, account)
    assert token["refresh_token"] and token["expires_at"]
    assert b"rt-" not in (account.secret_enc or b"")  # encrypted at rest
    # The connection test before saving already used XOAUTH2 against Dovecot.
    assert (token["access_token"], True) in authsrv.introspections

    report = fetching.fetch_account(oauth_app, account.id)
    assert report.stored == 1
    [account] = accounts(oauth_app)
    assert account.status == AccountStatus.OK.value


def test_add_account_without_popup_redirects(oauth_app: Flask, client: FlaskClient,
                                             authsrv: AuthServer, ms_user: MsUser) -> None:
    resp = sign_in(client, authsrv, f"{PREFIX}/add/pop3/oauth/office365/start",
                   add_form(ms_user, delete_policy="delete"), ms_user)
    [account] = accounts(oauth_app)
    assert resp.status_code == 302
    assert resp.headers["Location"] == f"{PREFIX}/{account.id}/connected"
    assert account.provider == "office365" and account.delete_policy == "delete"
    page = client.get(resp.headers["Location"]).text
    assert f"<bdi>{ms_user.email}</bdi> is connected" in page


def test_cancelled_wrong_account_and_replayed_state(oauth_app: Flask, client: FlaskClient,
                                                    authsrv: AuthServer,
                                                    ms_user: MsUser) -> None:
    path = f"{PREFIX}/add/pop3/oauth/outlook/start"
    resp = sign_in(client, authsrv, path, add_form(ms_user, popup="1"), ms_user, accept=False)
    assert popup_result(resp)["ok"] is False
    assert "You cancelled the sign-in" in resp.text

    resp = sign_in(client, authsrv, path, add_form(ms_user, email="other@contoso.com"),
                   ms_user)
    assert resp.status_code == 422
    assert (f"You signed in as <bdi>{ms_user.email}</bdi>, but this is for "
            "<bdi>other@contoso.com</bdi>") in resp.text

    url = start(client, path, add_form(ms_user))
    location = authsrv.consent(url, ms_user.username, ms_user.password)
    assert callback(client, location).status_code == 302
    replay = callback(client, location)  # the state was used once: refused
    assert replay.status_code == 400 and "expired" in replay.text
    # Another signed-in user cannot complete alice's sign-in.
    url = start(client, path, add_form(ms_user))
    location = authsrv.consent(url, ms_user.username, ms_user.password)
    bob = login(oauth_app.test_client(), "bob")
    assert callback(bob, location).status_code == 400
    assert len(accounts(oauth_app)) == 1


def test_form_errors_and_unconfigured_provider(make_oauth_app: Callable[..., Flask],
                                                authsrv: AuthServer, ms_user: MsUser) -> None:
    app = make_oauth_app(POPACCOUNTS_MICROSOFT_CLIENT_ID=None)
    c = login(app.test_client(), "alice")
    page = c.get(f"{PREFIX}/add/pop3/oauth/outlook").text
    assert "not set up on this site" in page and "Authenticate" not in page
    assert c.post(f"{PREFIX}/add/pop3/oauth/outlook/start",
                  data=add_form(ms_user)).status_code == 400
    app2 = make_oauth_app()
    c2 = login(app2.test_client(), "alice")
    resp = c2.post(f"{PREFIX}/add/pop3/oauth/outlook/start",
                   data=add_form(ms_user, email="not an address"))
    assert resp.status_code == 400 and "not a valid email address" in resp.text
    assert c2.post(f"{PREFIX}/add/pop3/oauth/nope/start", data=add_form(ms_user)
                   ).status_code == 404


def test_gmail_preset_explains_app_passwords(client: FlaskClient) -> None:
    page = client.get(f"{PREFIX}/add/pop3/gmail").text
    assert 'value="pop.gmail.com"' in page and 'value="995"' in page
    assert "app password" in page and "2-Step Verification" in page
    assert "smtp.gmail.com" in page and "465" in page and "587" in page


def test_switch_password_account_to_oauth(oauth_app: Flask, client: FlaskClient,
                                          authsrv: AuthServer, oauth_dovecot: Dovecot,
                                          ms_user: MsUser) -> None:
    pop_pw = oauth_dovecot._users[ms_user.email]
    with oauth_app.test_request_context(), get_state(oauth_app).session_factory() as s:
        acc = create_account(oauth_app, s, "1", AccountInput(
            email=ms_user.email, name="Old way", send_from="", reply_to="", is_default=False,
            provider="other", pop_host="127.0.0.1", pop_port=oauth_dovecot.pop3s_port,
            pop_security=Security.SSL, pop_username=ms_user.email, password=pop_pw))
        account_id = acc.id
    # The provider stops accepting the password (R13's "moved to OAuth"); the refused
    # login comes from its own address (Dovecot slows later logins from that address).
    oauth_app.config["POPACCOUNTS_SOURCE_ADDRESS"] = fresh_source_address()[0]
    oauth_dovecot.set_password(ms_user.email, "no-longer-accepted")
    oauth_dovecot.deliver(ms_user.email, mail("After the switch", 2))
    try:
        fetching.fetch_account(oauth_app, account_id)
    except Exception:
        pass
    oauth_app.config["POPACCOUNTS_SOURCE_ADDRESS"] = None
    [account] = accounts(oauth_app)
    assert account.status == AccountStatus.NEEDS_PASSWORD.value
    index = client.get(f"{PREFIX}/").text
    assert f"{PREFIX}/{account_id}/oauth/switch" in index

    page = client.get(f"{PREFIX}/{account_id}/oauth/switch").text
    assert "Outlook.com" in page and "Authenticate" in page
    resp = sign_in(client, authsrv, f"{PREFIX}/{account_id}/oauth/switch",
                   {"provider": "outlook", "popup": ""}, ms_user)
    assert resp.status_code == 302 and resp.headers["Location"] == f"{PREFIX}/"
    [account] = accounts(oauth_app)
    assert account.auth_method == AuthMethod.XOAUTH2.value
    assert account.status in (AccountStatus.NEW.value, AccountStatus.OK.value)
    assert "refresh_token" in token_of(oauth_app, account)  # the password is gone
    assert fetching.fetch_account(oauth_app, account_id).stored == 1


def test_oauth_account_edit_has_no_password_and_delete_revokes_the_grant(
        oauth_app: Flask, client: FlaskClient, authsrv: AuthServer, ms_user: MsUser) -> None:
    sign_in(client, authsrv, f"{PREFIX}/add/pop3/oauth/outlook/start", add_form(ms_user),
            ms_user)
    [account] = accounts(oauth_app)
    before = token_of(oauth_app, account)

    page = client.get(f"{PREFIX}/{account.id}/edit").text
    assert 'name="password"' not in page and "without a password" in page
    # A password posted anyway (an old form, a hand-made request) never replaces the token.
    form = query("?" + _edit_fields(page))
    form["password"] = "not-a-token"
    resp = client.post(f"{PREFIX}/{account.id}/edit", data=form)
    assert resp.status_code == 302, resp.text
    [account] = accounts(oauth_app)
    assert token_of(oauth_app, account) == before

    assert any(not t.refresh_revoked for t in authsrv.tokens_of(ms_user.username))
    page = client.get(f"{PREFIX}/{account.id}/delete").text
    assert client.post(f"{PREFIX}/{account.id}/delete",
                       data=query("?" + _edit_fields(page))).status_code == 302
    assert accounts(oauth_app) == []
    assert all(t.refresh_revoked for t in authsrv.tokens_of(ms_user.username))


def _edit_fields(page: str) -> str:
    """The edit form's current values, as a query string (inputs, checked boxes, selects)."""
    import html
    import re
    from urllib.parse import urlencode

    pairs: list[tuple[str, str]] = []
    for tag in re.findall(r"<input[^>]*>", page):
        name = re.search(r'name="([^"]+)"', tag)
        if not name or 'type="submit"' in tag:
            continue
        if ('type="checkbox"' in tag or 'type="radio"' in tag) and "checked" not in tag:
            continue
        value = re.search(r'value="([^"]*)"', tag)
        pairs.append((name.group(1), html.unescape(value.group(1)) if value else ""))
    for name, body in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', page, re.S):
        for option in re.findall(r"<option[^>]*>", body):
            value = re.search(r'value="([^"]*)"', option)
            if "selected" in option and value:
                pairs.append((name, html.unescape(value.group(1))))
    return urlencode(pairs)
