"""Every Mail Accounts route through Flask's test client (no mail server needed:
the incoming test and check-now are replaced where a real server would be used;
tests/web/test_dovecot_e2e.py does the same against a real Dovecot)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_popaccounts import db_session
from flask_popaccounts.engine.errors import AuthenticationFailed, CertificateInvalid
from flask_popaccounts.services import accounts as account_svc
from flask_popaccounts.services import fetching, progress
from flask_popaccounts.storage.models import Account, AccountStatus

from .conftest import PREFIX, account_form, login

SECRET = "Sup3r-S3cret-pw"


@pytest.fixture
def tested(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replace the real incoming test (a network login) with a recorder that passes."""
    calls: list[Any] = []

    def fake(app: Flask, data: Any, *, existing: Any = None) -> frozenset[str]:
        calls.append((data, existing))
        return frozenset({"UIDL", "USER"})

    monkeypatch.setattr(account_svc, "test_incoming", fake)
    return calls


def add(client: FlaskClient, **over: Any) -> int:
    resp = client.post(f"{PREFIX}/add/pop3/other", data=account_form(**over))
    assert resp.status_code == 302, resp.text
    m = re.search(r"/(\d+)/connected$", resp.location)
    assert m, resp.location
    return int(m.group(1))


def get_account(app: Flask, account_id: int) -> Account:
    with app.app_context():
        account = db_session().get(Account, account_id)
        assert account is not None
        db_session().expunge(account)
        return account


# -- sign-in and the wizard's pages ---------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/add", "/add/pop3", "/add/pop3/other",
                                  "/add/pop3/oauth/outlook", "/1/edit", "/1/progress.json"])
def test_pages_need_sign_in(app: Flask, path: str) -> None:
    resp = app.test_client().get(PREFIX + path)
    assert resp.status_code == 302
    assert resp.location.startswith("/login")


def test_empty_accounts_page(alice: FlaskClient) -> None:
    resp = alice.get(PREFIX + "/")
    assert resp.status_code == 200
    assert "No other mailboxes yet" in resp.text
    assert f'href="{PREFIX}/add"' in resp.text
    assert "popaccounts/style.css" in resp.text


def test_static_files_served(alice: FlaskClient) -> None:
    assert alice.get(PREFIX + "/static/popaccounts/style.css").status_code == 200
    assert alice.get(PREFIX + "/static/popaccounts/progress.js").status_code == 200


def test_wizard_steps(alice: FlaskClient) -> None:
    step1 = alice.get(PREFIX + "/add")
    assert "POP3" in step1.text and f'href="{PREFIX}/add/pop3"' in step1.text
    step2 = alice.get(PREFIX + "/add/pop3")
    for label in ("Outlook.com", "Office 365", "Gmail", "Other"):
        assert label in step2.text
    other = alice.get(PREFIX + "/add/pop3/other")
    assert other.status_code == 200
    assert "Test and save" in other.text
    assert 'name="csrf_token"' in other.text or "csrf_token" in other.text
    assert 'value="995"' in other.text


def test_gmail_preset_and_app_password_guidance(alice: FlaskClient) -> None:
    resp = alice.get(PREFIX + "/add/pop3/gmail")
    assert resp.status_code == 200
    assert 'value="pop.gmail.com"' in resp.text
    assert "app password" in resp.text
    assert "less secure apps" in resp.text


@pytest.mark.parametrize("provider", ["outlook", "office365"])
def test_oauth_providers_get_an_honest_page(alice: FlaskClient, provider: str) -> None:
    resp = alice.get(f"{PREFIX}/add/pop3/oauth/{provider}")
    assert resp.status_code == 200
    assert "OAuth" in resp.text
    assert 'type="password"' not in resp.text  # no fake sign-in form
    # the form URL for an OAuth provider sends the user to that page
    assert alice.get(f"{PREFIX}/add/pop3/{provider}").location.endswith(f"/oauth/{provider}")


def test_unknown_provider_is_404(alice: FlaskClient) -> None:
    assert alice.get(PREFIX + "/add/pop3/yahooo").status_code == 404
    assert alice.get(PREFIX + "/add/pop3/oauth/gmail").status_code == 404


# -- validation --------------------------------------------------------------------------

def _errors(html: str) -> dict[str, str]:
    found: list[tuple[str, str]] = re.findall(
        r'class="pa-error-text" id="([a-z_]+)-error">([^<]*)<', html)
    return dict(found)


@pytest.mark.parametrize("host", ["bad host", "pop..example.com", "-pop.example.com",
                                  "pop.example.com/x", "a" * 64 + ".com", "pop_3.example.com"])
def test_bad_host_refused(alice: FlaskClient, tested: list[Any], host: str) -> None:
    resp = alice.post(PREFIX + "/add/pop3/other", data=account_form(pop_host=host))
    assert resp.status_code == 400
    assert "pop_host" in _errors(resp.text)
    assert not tested


@pytest.mark.parametrize("host", ["pop.example.com", "POP.Example.COM.", "127.0.0.1", "::1",
                                  "bücher.example"])
def test_good_hosts_accepted(alice: FlaskClient, tested: list[Any], host: str) -> None:
    add(alice, pop_host=host, email=f"x{abs(hash(host))}@example.com")
    assert tested[-1][0].pop_host == tested[-1][0].pop_host.lower()


@pytest.mark.parametrize("port", ["25", "143", "0", "99999", "abc", ""])
def test_disallowed_port(alice: FlaskClient, tested: list[Any], port: str) -> None:
    resp = alice.post(PREFIX + "/add/pop3/other", data=account_form(pop_port=port))
    assert resp.status_code == 400
    errors = _errors(resp.text)
    assert "pop_port" in errors
    if port.isdigit():
        assert "Only the standard POP3 ports are allowed: 110 and 995" in errors["pop_port"]
    assert not tested


def test_configured_extra_port_allowed(make_app: Any, tested: list[Any]) -> None:
    app = make_app(POPACCOUNTS_ALLOWED_POP3_PORTS=(110, 995, 1995))
    client = login(app.test_client())
    add(client, pop_port="1995")


@pytest.mark.parametrize("field", ["email", "name", "send_from", "reply_to", "pop_host",
                                   "pop_username", "password"])
@pytest.mark.parametrize("bad", ["\r\n", "\n", "\r", "\x00", "\x1b", "\u2028"])
def test_crlf_and_control_chars_refused(alice: FlaskClient, tested: list[Any], field: str,
                                        bad: str) -> None:
    value = account_form()[field] or "you@example.com"
    value = value[:3] + bad + "DELE 1" + value[3:]
    resp = alice.post(PREFIX + "/add/pop3/other", data=account_form(**{field: value}))
    assert resp.status_code == 400
    assert field in _errors(resp.text)
    assert not tested


def test_missing_password_on_add(alice: FlaskClient, tested: list[Any]) -> None:
    resp = alice.post(PREFIX + "/add/pop3/other", data=account_form(password=""))
    assert resp.status_code == 400
    assert "Enter the password" in _errors(resp.text)["password"]


@pytest.mark.parametrize("field", ["email", "send_from", "reply_to"])
def test_bad_addresses(alice: FlaskClient, tested: list[Any], field: str) -> None:
    resp = alice.post(PREFIX + "/add/pop3/other", data=account_form(**{field: "not an address"}))
    assert resp.status_code == 400
    assert "not a valid email address" in _errors(resp.text)[field]


def test_missing_required_fields(alice: FlaskClient, tested: list[Any]) -> None:
    resp = alice.post(PREFIX + "/add/pop3/other",
                      data=account_form(email="", name="", pop_host="", pop_username=""))
    assert resp.status_code == 400
    assert {"email", "name", "pop_host", "pop_username"} <= set(_errors(resp.text))


def test_delete_after_days_needs_days(alice: FlaskClient, tested: list[Any]) -> None:
    resp = alice.post(PREFIX + "/add/pop3/other",
                      data=account_form(delete_policy="after_days", delete_after_days=""))
    assert resp.status_code == 400
    assert "delete_after_days" in _errors(resp.text)


def test_plain_security_only_when_allowed(make_app: Any, tested: list[Any]) -> None:
    app = make_app()
    client = login(app.test_client())
    assert 'value="plain"' not in client.get(PREFIX + "/add/pop3/other").text
    resp = client.post(PREFIX + "/add/pop3/other", data=account_form(pop_security="plain"))
    assert resp.status_code == 400
    app2 = make_app(POPACCOUNTS_ALLOW_PLAINTEXT=True)
    client2 = login(app2.test_client())
    assert 'value="plain"' in client2.get(PREFIX + "/add/pop3/other").text
    add(client2, pop_security="plain", pop_port="110")


def test_errors_are_linked_to_their_fields(alice: FlaskClient) -> None:
    resp = alice.post(PREFIX + "/add/pop3/other", data=account_form(pop_port="25"))
    assert 'aria-describedby="pop_port-error"' in resp.text
    assert 'aria-invalid="true"' in resp.text


# -- add: test and save ---------------------------------------------------------------

def test_add_happy_path(app: Flask, alice: FlaskClient, tested: list[Any]) -> None:
    account_id = add(alice, send_from="", reply_to="replies@example.com", is_default="y",
                     delete_policy="after_days", delete_after_days="14",
                     fetch_interval_minutes="15")
    data, existing = tested[-1]
    assert existing is None
    assert data.password == SECRET
    assert data.send_from == "me@example.com"  # empty send-from = the address
    connected = alice.get(f"{PREFIX}/{account_id}/connected")
    assert connected.status_code == 200
    assert "Set up outgoing mail" in connected.text
    assert f'href="/mail/{account_id}/"' in connected.text
    assert SECRET not in connected.text

    acc = get_account(app, account_id)
    assert acc.owner_id == "1" and acc.reply_to == "replies@example.com"
    assert str(acc.delete_policy) == "after_days" and acc.delete_after_days == 14
    assert acc.fetch_interval_minutes == 15 and acc.is_default
    assert acc.secret_enc and SECRET.encode() not in acc.secret_enc

    index = alice.get(PREFIX + "/")
    assert "me@example.com" in index.text and "Old mail" in index.text
    assert "Default" in index.text
    assert f'href="/mail/{account_id}/"' in index.text  # the switch icon (R8)
    assert "Waiting for the first fetch" in index.text
    assert SECRET not in index.text


@pytest.mark.parametrize("exc", [AuthenticationFailed, CertificateInvalid])
def test_failed_test_shows_named_error_and_saves_nothing(
        app: Flask, alice: FlaskClient, monkeypatch: pytest.MonkeyPatch, exc: Any) -> None:
    def fail(app: Flask, data: Any, *, existing: Any = None) -> frozenset[str]:
        raise exc(detail="-ERR [AUTH] nope " + SECRET)

    monkeypatch.setattr(account_svc, "test_incoming", fail)
    resp = alice.post(PREFIX + "/add/pop3/other", data=account_form())
    assert resp.status_code == 422
    assert exc.title in resp.text
    assert exc.help.split(".")[0].replace("'", "&#39;") in resp.text
    assert SECRET not in resp.text  # never echoed, not even in server detail
    assert 'name="password"' in resp.text and 'value="' + SECRET not in resp.text
    if exc is AuthenticationFailed:
        assert "domain\\username" in resp.text
        assert "POP access is enabled" in resp.text
    assert "me@example.com" in resp.text  # the other fields are kept
    with app.app_context():
        assert account_svc.list_accounts(db_session(), "1") == []


def test_password_never_in_any_response(app: Flask, alice: FlaskClient,
                                        tested: list[Any]) -> None:
    account_id = add(alice)
    pages = [alice.post(PREFIX + "/add/pop3/other", data=account_form(pop_port="25")),
             alice.get(f"{PREFIX}/{account_id}/edit"),
             alice.get(PREFIX + "/"),
             alice.get(f"{PREFIX}/{account_id}/progress.json"),
             alice.get(f"/mail/{account_id}/")]
    for resp in pages:
        assert SECRET not in resp.get_data(as_text=True)


# -- edit --------------------------------------------------------------------------------

def test_edit_prefilled_without_password(alice: FlaskClient, tested: list[Any]) -> None:
    account_id = add(alice)
    resp = alice.get(f"{PREFIX}/{account_id}/edit")
    assert resp.status_code == 200
    assert 'value="pop.example.com"' in resp.text
    assert "Leave empty to keep the current password" in resp.text
    assert SECRET not in resp.text


def test_edit_without_connection_change_does_not_retest(app: Flask, alice: FlaskClient,
                                                        tested: list[Any]) -> None:
    account_id = add(alice)
    n = len(tested)
    resp = alice.post(f"{PREFIX}/{account_id}/edit",
                      data=account_form(password="", name="Renamed"))
    assert resp.status_code == 302
    assert len(tested) == n
    assert get_account(app, account_id).name == "Renamed"


def test_edit_connection_change_retests_with_stored_password(
        app: Flask, alice: FlaskClient, tested: list[Any]) -> None:
    account_id = add(alice)
    resp = alice.post(f"{PREFIX}/{account_id}/edit",
                      data=account_form(password="", pop_host="pop2.example.com"))
    assert resp.status_code == 302
    data, existing = tested[-1]
    assert data.password is None and existing.id == account_id
    assert get_account(app, account_id).pop_host == "pop2.example.com"


def test_edit_failed_retest_keeps_old_settings(app: Flask, alice: FlaskClient,
                                               tested: list[Any],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    account_id = add(alice)

    def fail(app: Flask, data: Any, *, existing: Any = None) -> frozenset[str]:
        raise AuthenticationFailed()

    monkeypatch.setattr(account_svc, "test_incoming", fail)
    resp = alice.post(f"{PREFIX}/{account_id}/edit", data=account_form(password="new-pw-123"))
    assert resp.status_code == 422
    assert "Authentication failed" in resp.text and "new-pw-123" not in resp.text


def test_needs_password_call_to_action_and_reenable(app: Flask, alice: FlaskClient,
                                                    tested: list[Any]) -> None:
    """R7: the password changed at the provider; the user updates it here."""
    account_id = add(alice)
    with app.app_context():
        acc = db_session().get(Account, account_id)
        assert acc is not None
        acc.status = AccountStatus.NEEDS_PASSWORD.value  # type: ignore[assignment]
        acc.last_error_code = "auth_failed"
        acc.enabled = False
        db_session().commit()
    index = alice.get(PREFIX + "/")
    assert "Update password" in index.text
    assert f"{PREFIX}/{account_id}/edit#password" in index.text
    edit = alice.get(f"{PREFIX}/{account_id}/edit")
    assert "Update the password" in edit.text
    resp = alice.post(f"{PREFIX}/{account_id}/edit", data=account_form(password="brand-new-pw"))
    assert resp.status_code == 302
    assert tested[-1][0].password == "brand-new-pw"
    acc2 = get_account(app, account_id)
    assert acc2.enabled
    assert str(acc2.status) == AccountStatus.NEW.value


def test_edit_validation(alice: FlaskClient, tested: list[Any]) -> None:
    account_id = add(alice)
    resp = alice.post(f"{PREFIX}/{account_id}/edit", data=account_form(pop_username="a\nb"))
    assert resp.status_code == 400


# -- delete, enable, default, check now, progress ----------------------------------------

def test_delete_confirmation_then_delete(app: Flask, alice: FlaskClient,
                                         tested: list[Any]) -> None:
    account_id = add(alice)
    page = alice.get(f"{PREFIX}/{account_id}/delete")
    assert page.status_code == 200 and "Delete the account and its mail" in page.text
    assert get_account(app, account_id)  # GET deletes nothing
    resp = alice.post(f"{PREFIX}/{account_id}/delete")
    assert resp.status_code == 302
    with app.app_context():
        assert db_session().get(Account, account_id) is None
    assert alice.get(f"{PREFIX}/{account_id}/edit").status_code == 404


def test_enable_disable(app: Flask, alice: FlaskClient, tested: list[Any]) -> None:
    account_id = add(alice)
    assert alice.post(f"{PREFIX}/{account_id}/disable").status_code == 302
    assert not get_account(app, account_id).enabled
    assert "Disabled" in alice.get(PREFIX + "/").text
    assert alice.post(f"{PREFIX}/{account_id}/enable").status_code == 302
    assert get_account(app, account_id).enabled


def test_set_default(app: Flask, alice: FlaskClient, tested: list[Any]) -> None:
    first = add(alice)
    second = add(alice, email="two@example.com", name="Two")
    assert get_account(app, first).is_default and not get_account(app, second).is_default
    assert alice.post(f"{PREFIX}/{second}/default").status_code == 302
    assert get_account(app, second).is_default and not get_account(app, first).is_default


def test_get_on_post_only_routes(alice: FlaskClient, tested: list[Any]) -> None:
    account_id = add(alice)
    for action in ("enable", "disable", "default", "check"):
        assert alice.get(f"{PREFIX}/{account_id}/{action}").status_code == 405


def test_check_now(alice: FlaskClient, tested: list[Any], monkeypatch: pytest.MonkeyPatch
                   ) -> None:
    account_id = add(alice)
    started: list[int] = []

    def fake_check(app: Flask, aid: int) -> bool:
        started.append(aid)
        return len(started) == 1

    monkeypatch.setattr(fetching, "check_now", fake_check)
    resp = alice.post(f"{PREFIX}/{account_id}/check", follow_redirects=True)
    assert "Checking me@example.com for new mail" in resp.text
    resp = alice.post(f"{PREFIX}/{account_id}/check", follow_redirects=True)
    assert "already being checked" in resp.text
    js = alice.post(f"{PREFIX}/{account_id}/check", headers={"Accept": "application/json"})
    assert js.get_json() == {"started": False, "waits_for_user": False,
                             "message": "me@example.com is already being checked."}
    back = alice.post(f"{PREFIX}/{account_id}/check", data={"next": f"/mail/{account_id}/"})
    assert back.location == f"/mail/{account_id}/"
    evil = alice.post(f"{PREFIX}/{account_id}/check", data={"next": "//evil.example/"})
    assert evil.location == f"{PREFIX}/"
    assert started == [account_id] * 5


def test_check_now_on_an_account_waiting_for_its_user_says_why(
        alice: FlaskClient, tested: list[Any], app: Flask) -> None:
    from flask_popaccounts import get_state
    from flask_popaccounts.storage.models import Account, AccountStatus

    account_id = add(alice)
    with get_state(app).session_factory() as s:
        s.get(Account, account_id).status = AccountStatus.NEEDS_PASSWORD.value
        s.commit()
    resp = alice.post(f"{PREFIX}/{account_id}/check", follow_redirects=True)
    assert "me@example.com was not checked: Needs your attention: update the password" in resp.text
    assert "already being checked" not in resp.text
    js = alice.post(f"{PREFIX}/{account_id}/check", headers={"Accept": "application/json"})
    assert js.get_json()["waits_for_user"] is True and js.get_json()["started"] is False


def test_progress_json_and_bar(alice: FlaskClient, tested: list[Any],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    account_id = add(alice)
    data = alice.get(f"{PREFIX}/{account_id}/progress.json").get_json()
    assert data["running"] is False
    assert data["status"]["label"] == "Waiting for the first fetch"
    monkeypatch.setattr(progress, "fetch_progress",
                        lambda aid: {"running": True, "done": 40, "total": 200})
    data = alice.get(f"{PREFIX}/{account_id}/progress.json").get_json()
    assert data["running"] is True and data["progress"]["done"] == 40
    index = alice.get(PREFIX + "/")
    assert 'max="200" value="40"' in index.text  # server-rendered bar works without JS
    assert "40 of 200 messages" in index.text


# -- other users' accounts ------------------------------------------------------------

def test_other_users_account_is_404_everywhere(app: Flask, tested: list[Any]) -> None:
    alice = login(app.test_client(), "alice")
    account_id = add(alice)
    bob = login(app.test_client(), "bob")
    for path in ("connected", "edit", "delete", "progress.json"):
        assert bob.get(f"{PREFIX}/{account_id}/{path}").status_code == 404, path
    for path in ("edit", "delete", "enable", "disable", "default", "check"):
        assert bob.post(f"{PREFIX}/{account_id}/{path}",
                        data=account_form()).status_code == 404, path
    assert bob.get(f"/mail/{account_id}/").status_code == 404
    assert "me@example.com" not in bob.get(PREFIX + "/").text
    acc = get_account(app, account_id)  # untouched
    assert acc.enabled and acc.name == "Old mail"
    assert alice.get(f"{PREFIX}/{account_id}/edit").status_code == 200
