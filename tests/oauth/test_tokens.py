"""Token life on real servers: expiry mid-life (refresh before the fetch, the rotated
refresh token stored every time; time moved on by a fake clock shared by the app and
the authorization server, not waited out), the refresh margin, refreshes serialized
per account, a revoked grant (NEEDS_REAUTH, no further logins or refreshes, the
Authenticate button resumes it), a token the POP3 server refuses, and the XOAUTH2 error
challenge answered without desync (R13)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import replace

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_popaccounts import get_state
from flask_popaccounts.config import net_policy
from flask_popaccounts.engine import sync
from flask_popaccounts.engine.errors import ConnectionFailed, TokenRejected
from flask_popaccounts.engine.pop3 import POP3Client
from flask_popaccounts.engine.types import AuthMethod, Credentials, Security, ServerSpec
from flask_popaccounts.services import credentials, fetching
from flask_popaccounts.storage.models import Account, AccountStatus
from tests.conftest import fresh_source_address
from tests.support.authserver import AuthServer
from tests.support.clock import FakeClock, use_clock
from tests.support.dovecot import Dovecot

from .conftest import PREFIX, MsUser, mail
from .flow import add_form, sign_in


def add_account(client: FlaskClient, authsrv: AuthServer, user: MsUser) -> int:
    resp = sign_in(client, authsrv, f"{PREFIX}/add/pop3/oauth/outlook/start",
                   add_form(user), user)
    assert resp.status_code == 302, resp.text
    return int(resp.headers["Location"].split("/")[-2])


def load(app: Flask, account_id: int) -> tuple[Account, dict[str, object]]:
    with get_state(app).session_factory() as s:
        account = s.get(Account, account_id)
        assert account is not None and account.secret_enc is not None
        token = json.loads(get_state(app).secrets.decrypt(account.secret_enc))
    return account, token


def pop_spec(dc: Dovecot, user: str) -> ServerSpec:
    return ServerSpec(host="127.0.0.1", port=dc.pop3s_port, security=Security.SSL,
                      username=user)


def test_expiring_token_is_refreshed_before_fetch_and_rotation_stored(
        make_oauth_app: Callable[..., Flask], authsrv: AuthServer, oauth_dovecot: Dovecot,
        ms_user: MsUser, clock: FakeClock) -> None:
    from tests.web.conftest import login

    app = use_clock(make_oauth_app(POPACCOUNTS_OAUTH_REFRESH_MARGIN_SECONDS=0), clock)
    client = login(app.test_client(), "alice")
    account_id = add_account(client, authsrv, ms_user)
    _, first = load(app, account_id)
    lifetime = authsrv.access_token_lifetime
    assert first["expires_at"] == int(clock.timestamp()) + lifetime  # on the app's clock
    oauth_dovecot.deliver(ms_user.email, mail("First", 1))

    clock.advance(lifetime + 1)  # the access token expires mid-life
    # The provider's token really is dead now: Dovecot refuses it.
    # (from its own source address: Dovecot delays later logins from an address that
    # failed one, and the fetch below logs in for real)
    net = replace(net_policy(app.config), source_address=fresh_source_address())
    with pytest.raises(TokenRejected):
        sync.check_login(pop_spec(oauth_dovecot, ms_user.email),
                         Credentials(AuthMethod.XOAUTH2, str(first["access_token"])), net=net)

    refreshes = authsrv.refreshes()
    assert fetching.fetch_account(app, account_id).stored == 1  # no request context here
    assert authsrv.refreshes() == refreshes + 1
    account, second = load(app, account_id)
    assert account.status == AccountStatus.OK.value
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]  # rotated and stored
    assert second["expires_at"] == int(clock.timestamp()) + lifetime

    # Once more: only works if the rotated refresh token was stored (the old one is dead).
    oauth_dovecot.deliver(ms_user.email, mail("Second", 2))
    clock.advance(lifetime + 1)
    assert fetching.fetch_account(app, account_id).stored == 1
    account, third = load(app, account_id)
    assert third["refresh_token"] not in (first["refresh_token"], second["refresh_token"])
    assert account.status == AccountStatus.OK.value
    assert authsrv.refreshes() == refreshes + 2
    # The replaced refresh tokens are revoked at the provider.
    old = [t for t in authsrv.tokens_of(ms_user.username)
           if t.refresh_token in (first["refresh_token"], second["refresh_token"])]
    assert len(old) == 2 and all(t.refresh_revoked for t in old)


def test_a_token_not_yet_expiring_is_used_as_it_is(
        make_oauth_app: Callable[..., Flask], authsrv: AuthServer, oauth_dovecot: Dovecot,
        ms_user: MsUser, clock: FakeClock) -> None:
    from tests.web.conftest import login

    app = use_clock(make_oauth_app(POPACCOUNTS_OAUTH_REFRESH_MARGIN_SECONDS=300), clock)
    account_id = add_account(login(app.test_client(), "alice"), authsrv, ms_user)
    _, first = load(app, account_id)
    oauth_dovecot.deliver(ms_user.email, mail("Still fresh", 4))
    # One second before the refresh margin begins: no refresh, the stored token logs in.
    clock.advance(authsrv.access_token_lifetime - 300 - 1)
    refreshes = authsrv.refreshes()
    assert fetching.fetch_account(app, account_id).stored == 1
    assert authsrv.refreshes() == refreshes
    assert load(app, account_id)[1] == first
    # Inside the margin: refreshed before the next fetch, although still valid.
    clock.advance(2)
    fetching.fetch_account(app, account_id)
    assert authsrv.refreshes() == refreshes + 1
    assert load(app, account_id)[1]["access_token"] != first["access_token"]


def test_concurrent_refreshes_of_one_account_are_serialized(
        make_oauth_app: Callable[..., Flask], authsrv: AuthServer, ms_user: MsUser) -> None:
    from tests.web.conftest import login

    # A margin longer than the lifetime: every caller finds the token "expiring".
    app = make_oauth_app(POPACCOUNTS_OAUTH_REFRESH_MARGIN_SECONDS=50)
    client = login(app.test_client(), "alice")
    authsrv.access_token_lifetime = 30
    account_id = add_account(client, authsrv, ms_user)
    # Newly issued tokens live long, so only the first refresh is needed.
    authsrv.access_token_lifetime = 3600
    before = authsrv.refreshes()
    results: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        try:
            barrier.wait()
            results.append(credentials.ensure_fresh_credentials(app, account_id).secret)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    authsrv.refresh_delay = 0.5  # a slow provider: the others arrive while it answers
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        authsrv.refresh_delay = 0.0
    assert not errors, errors
    # Each thread used its own database session: the row lock, not a Python lock,
    # made the late ones wait and then find the fresh token.
    assert authsrv.refreshes() == before + 1
    assert len(set(results)) == 1
    account, token = load(app, account_id)
    assert token["access_token"] == results[0]
    assert account.status != AccountStatus.NEEDS_REAUTH.value


def test_revoked_grant_stops_fetching_until_authenticate(
        make_oauth_app: Callable[..., Flask], authsrv: AuthServer, oauth_dovecot: Dovecot,
        ms_user: MsUser, clock: FakeClock) -> None:
    from tests.web.conftest import login

    app = use_clock(make_oauth_app(POPACCOUNTS_OAUTH_REFRESH_MARGIN_SECONDS=0), clock)
    client = login(app.test_client(), "alice")
    account_id = add_account(client, authsrv, ms_user)
    authsrv.revoke_user(ms_user.username)  # e.g. the password changed at Microsoft
    clock.advance(authsrv.access_token_lifetime + 1)  # expired: the fetch must refresh

    with pytest.raises(TokenRejected):
        fetching.fetch_account(app, account_id)
    account, _ = load(app, account_id)
    assert account.status == AccountStatus.NEEDS_REAUTH.value
    assert account.last_error_code == "token_rejected"

    token_calls, checks = len(authsrv.token_requests), len(authsrv.introspections)
    with pytest.raises(fetching.FetchSkipped) as skipped:
        fetching.fetch_account(app, account_id)
    assert skipped.value.reason == "needs_reauth"
    assert fetching.check_now(app, account_id) is False
    assert (len(authsrv.token_requests), len(authsrv.introspections)) == (token_calls, checks)

    page = client.get(f"{PREFIX}/").text
    assert "Needs your attention: re-authenticate" in page
    assert f'action="{PREFIX}/{account_id}/oauth/authenticate"' in page
    assert ">Authenticate</button>" in page

    oauth_dovecot.deliver(ms_user.email, mail("After re-authentication", 3))
    resp = sign_in(client, authsrv, f"{PREFIX}/{account_id}/oauth/authenticate",
                   {"popup": ""}, ms_user)
    assert resp.status_code == 302 and resp.headers["Location"] == f"{PREFIX}/"
    account, _ = load(app, account_id)
    assert account.status in (AccountStatus.NEW.value, AccountStatus.OK.value)
    assert account.enabled and account.consecutive_failures == 0
    assert "re-authenticated; fetching resumes" in client.get(f"{PREFIX}/").text
    assert fetching.fetch_account(app, account_id).stored == 1


def test_reauth_in_popup_and_only_as_the_same_person(
        oauth_app: Flask, client: FlaskClient, authsrv: AuthServer, ms_user: MsUser) -> None:
    from .flow import popup_result

    account_id = add_account(client, authsrv, ms_user)
    other = MsUser("intruder", "intruder-pw", "intruder@contoso.com")
    authsrv.add_user(other.username, other.password, other.email)
    resp = sign_in(client, authsrv, f"{PREFIX}/{account_id}/oauth/authenticate",
                   {"popup": "1"}, other)
    result = popup_result(resp)
    assert result["ok"] is False
    assert "You signed in as \u2068intruder@contoso.com\u2069" in result["message"]
    resp = sign_in(client, authsrv, f"{PREFIX}/{account_id}/oauth/authenticate",
                   {"popup": "1"}, ms_user)
    assert popup_result(resp) == {"type": "popaccounts-oauth", "ok": True,
                                  "message": f"\u2068{ms_user.email}\u2069 re-authenticated; "
                                             "fetching resumes.",
                                  "redirect": f"{PREFIX}/"}


def test_a_token_the_pop3_server_refuses_is_refreshed_once_and_the_login_retried(
        oauth_app: Flask, client: FlaskClient, authsrv: AuthServer, oauth_dovecot: Dovecot,
        ms_user: MsUser) -> None:
    account_id = add_account(client, authsrv, ms_user)
    _, token = load(oauth_app, account_id)
    oauth_dovecot.deliver(ms_user.email, mail("After a refusal", 7))
    oauth_app.config["POPACCOUNTS_SOURCE_ADDRESS"] = fresh_source_address()[0]
    for t in authsrv.tokens_of(ms_user.username):  # the access token alone is revoked
        t.access_revoked = True
    refreshes = authsrv.refreshes()
    assert fetching.fetch_account(oauth_app, account_id).stored == 1
    assert authsrv.refreshes() == refreshes + 1  # once, although it had not expired
    account, after = load(oauth_app, account_id)
    assert account.status == AccountStatus.OK.value
    assert after["access_token"] != token["access_token"]


def test_a_token_refused_again_after_its_refresh_marks_needs_reauth(
        oauth_app: Flask, client: FlaskClient, authsrv: AuthServer, ms_user: MsUser) -> None:
    account_id = add_account(client, authsrv, ms_user)
    oauth_app.config["POPACCOUNTS_SOURCE_ADDRESS"] = fresh_source_address()[0]
    for t in authsrv.tokens_of(ms_user.username):
        t.access_revoked = True

    class Revoked(list):  # the provider's new access tokens are refused too
        def append(self, token):  # type: ignore[no-untyped-def]
            token.access_revoked = True
            super().append(token)

    kept, authsrv.tokens = authsrv.tokens, Revoked(authsrv.tokens)
    refreshes = authsrv.refreshes()
    try:
        with pytest.raises(TokenRejected):
            fetching.fetch_account(oauth_app, account_id)
    finally:
        kept[:] = authsrv.tokens
        authsrv.tokens = kept
    assert authsrv.refreshes() == refreshes + 1  # one refresh, then the user is asked
    account, _ = load(oauth_app, account_id)
    assert account.status == AccountStatus.NEEDS_REAUTH.value
    assert account.consecutive_failures == 1


def test_a_long_sync_refreshes_the_token_between_sessions(
        make_oauth_app: Callable[..., Flask], authsrv: AuthServer, oauth_dovecot: Dovecot,
        ms_user: MsUser, clock: FakeClock) -> None:
    from tests.web.conftest import login

    app = use_clock(make_oauth_app(POPACCOUNTS_OAUTH_REFRESH_MARGIN_SECONDS=0,
                                   POPACCOUNTS_MAX_MESSAGES_PER_SESSION=1), clock)
    account_id = add_account(login(app.test_client(), "alice"), authsrv, ms_user)
    for i in range(3):
        oauth_dovecot.deliver(ms_user.email, mail(f"Part {i}", 10 + i))
    lifetime = authsrv.access_token_lifetime
    refreshes = authsrv.refreshes()
    # Each session outlives the token (an hour passes per message, as on a slow line):
    # the next session must not log in with the one the provider now refuses.
    report = fetching.fetch_account(app, account_id,
                                    progress=lambda p: clock.advance(lifetime + 1))
    assert report.stored == 3
    assert authsrv.refreshes() == refreshes + 2  # before the 2nd and the 3rd session
    account, _ = load(app, account_id)
    assert account.status == AccountStatus.OK.value and account.message_count == 3


def test_unreachable_token_service_backs_off(make_oauth_app: Callable[..., Flask],
                                             authsrv: AuthServer, oauth_dovecot: Dovecot,
                                             ms_user: MsUser) -> None:
    from tests.support.dovecot import free_port
    from tests.web.conftest import login

    app = make_oauth_app(POPACCOUNTS_OAUTH_REFRESH_MARGIN_SECONDS=7200)
    client = login(app.test_client(), "alice")
    account_id = add_account(client, authsrv, ms_user)
    dead = f"http://127.0.0.1:{free_port()}/token"
    providers = dict(app.config["POPACCOUNTS_OAUTH_PROVIDERS"])
    providers["outlook"] = {**providers["outlook"], "token_url": dead}
    app.config["POPACCOUNTS_OAUTH_PROVIDERS"] = providers
    with pytest.raises(ConnectionFailed):
        credentials.ensure_fresh_credentials(app, account_id)
    account, _ = load(app, account_id)
    assert account.status == AccountStatus.RETRYING.value  # transient: not re-auth
    assert account.next_due_at is not None and account.consecutive_failures == 1


def test_bad_token_challenge_is_answered_without_desync(
        oauth_dovecot: Dovecot, authsrv: AuthServer, ms_user: MsUser,
        make_oauth_app: Callable[..., Flask]) -> None:
    from authlib.common.security import generate_token
    from authlib.integrations.requests_client import OAuth2Session

    from .conftest import CLIENT_ID, CLIENT_SECRET, TEST_CLIENT_CALLBACK

    session = OAuth2Session(CLIENT_ID, CLIENT_SECRET, scope="openid email offline_access",
                            redirect_uri=TEST_CLIENT_CALLBACK, code_challenge_method="S256")
    verifier = generate_token(48)
    url, _ = session.create_authorization_url(authsrv.authorize_url, code_verifier=verifier,
                                              nonce="n")
    location = authsrv.consent(url, ms_user.username, ms_user.password)
    good = session.fetch_token(authsrv.token_url, authorization_response=location,
                               code_verifier=verifier)["access_token"]

    app = make_oauth_app()
    net = replace(net_policy(app.config), source_address=fresh_source_address())
    client = POP3Client.open(pop_spec(oauth_dovecot, ms_user.email), net)
    try:
        with pytest.raises(TokenRejected) as info:
            client.login(ms_user.email, Credentials(AuthMethod.XOAUTH2, "not-a-real-token"))
        assert info.value.detail  # the server's challenge / answer is kept for the log
        # Same connection: the exchange was closed properly, so a follow-up works...
        client.login(ms_user.email, Credentials(AuthMethod.XOAUTH2, good))
        assert client.stat()[0] >= 0
        client.quit()  # ...and QUIT ends it cleanly (+OK, no stray lines)
    finally:
        client.close()
    assert (good, True) in authsrv.introspections
    assert ("not-a-real-token", False) in authsrv.introspections
