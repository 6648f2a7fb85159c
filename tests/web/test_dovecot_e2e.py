"""End to end against a real Dovecot: pages -> services -> engine -> Dovecot -> store ->
the example mailbox. No mocks."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_popaccounts.services.fetching import wait_for_check
from tests.support.dovecot import BAD_CERT_HOSTS, Dovecot

from .conftest import PREFIX, account_form, dovecot_config, login, own_source_address

#: (Date header, subject), delivered in this (not chronological) order.
MAIL = [
    ("Tue, 01 Jul 2025 10:00:00 +0000", "Second oldest"),
    ("Mon, 30 Jun 2025 09:00:00 +0000", "Oldest"),
    ("Thu, 03 Jul 2025 08:00:00 +0000", "Newest"),
    ("Wed, 02 Jul 2025 23:30:00 -0300", "Third, in another zone"),  # = 3 Jul 02:30 UTC
]


def message(date: str, subject: str, i: int) -> bytes:
    return (f"From: Sender {i} <s{i}@example.org>\r\nTo: me@example.com\r\n"
            f"Subject: {subject}\r\nDate: {date}\r\nMessage-ID: <e2e-{i}-{subject[:3]}@x>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"Body of {subject}.\r\n").encode()


@pytest.fixture
def dc_app(make_app: Any, dovecot: Dovecot) -> Flask:
    app: Flask = make_app(**dovecot_config(dovecot))
    return app


def add_through_pages(client: FlaskClient, dovecot: Dovecot, user: str, password: str,
                      **over: Any) -> Any:
    form = account_form(email=f"{user}@example.com", name=f"Box {user}",
                        pop_host="127.0.0.1", pop_port=str(dovecot.pop3s_port),
                        pop_security="ssl", pop_username=user, password=password)
    form.update(over)
    return client.post(f"{PREFIX}/add/pop3/other", data=form)


def test_add_check_now_and_read_in_mailbox(dc_app: Flask, dovecot: Dovecot,
                                           new_user: tuple[str, str]) -> None:
    user, password = new_user
    for i, (date, subject) in enumerate(MAIL):
        dovecot.deliver(user, message(date, subject, i))
    client = login(dc_app.test_client())

    resp = add_through_pages(client, dovecot, user, password)
    assert resp.status_code == 302, resp.text
    account_id = int(re.search(r"/(\d+)/connected", resp.location).group(1))  # type: ignore[union-attr]
    connected = client.get(resp.location)
    assert "is connected" in connected.text and password not in connected.text

    resp = client.post(f"{PREFIX}/{account_id}/check")
    assert resp.status_code == 302
    assert wait_for_check(dc_app, account_id, timeout=30)
    progress = client.get(f"{PREFIX}/{account_id}/progress.json").get_json()
    assert progress["running"] is False and progress["message_count"] == 4
    assert progress["status"]["label"] == "Working"

    box = client.get(f"/mail/{account_id}/")
    assert box.status_code == 200
    subjects = re.findall(r'<tr class="(unread|read)" data-message-id="\d+">.*?'
                          r'<a href="[^"]+"><bdi>([^<]+)</bdi></a>', box.text, re.S)
    assert subjects == [("unread", "Newest"), ("unread", "Third, in another zone"),
                        ("unread", "Second oldest"), ("unread", "Oldest")]
    assert 'aria-current="page"' in box.text  # the side pane shows this account selected

    first = re.search(rf'href="(/mail/{account_id}/\d+)"', box.text).group(1)  # type: ignore[union-attr]
    msg = client.get(first)
    assert msg.status_code == 200 and "Body of Newest." in msg.text
    box = client.get(f"/mail/{account_id}/")
    assert '<tr class="read"' in box.text and box.text.count('<tr class="unread"') == 3

    index = client.get(f"{PREFIX}/")
    assert "Working" in index.text and password not in index.text
    assert index.text.count("Last checked") == 1  # once per card, in its own field
    assert len(dovecot.server_messages(user)) == 4  # "keep" policy: still on the server


def test_wrong_password_shows_authentication_failed(dc_app: Flask, dovecot: Dovecot,
                                                    new_user: tuple[str, str]) -> None:
    user, _password = new_user
    client = login(dc_app.test_client())
    with own_source_address(dc_app):
        resp = add_through_pages(client, dovecot, user, "Wr0ng-Passw0rd")
    assert resp.status_code == 422
    assert "Authentication failed" in resp.text
    assert "POP access is enabled at your provider" in resp.text
    assert "domain\\username" in resp.text
    assert "Wr0ng-Passw0rd" not in resp.text
    assert "No other mailboxes yet" in client.get(f"{PREFIX}/").text


def test_self_signed_certificate_refused(dc_app: Flask, dovecot: Dovecot,
                                         new_user: tuple[str, str]) -> None:
    user, password = new_user
    client = login(dc_app.test_client())
    resp = add_through_pages(client, dovecot, user, password,
                             pop_host=BAD_CERT_HOSTS["self_signed"])
    assert resp.status_code == 422
    assert "Invalid certificate" in resp.text
    assert "certificate is not valid (self-signed" in resp.text
    assert password not in resp.text


def test_starttls_on_the_110_style_port(dc_app: Flask, dovecot: Dovecot,
                                        new_user: tuple[str, str]) -> None:
    user, password = new_user
    client = login(dc_app.test_client())
    resp = add_through_pages(client, dovecot, user, password,
                             pop_port=str(dovecot.pop3_port), pop_security="starttls")
    assert resp.status_code == 302, resp.text


def test_connection_failed_named(dc_app: Flask, dovecot: Dovecot,
                                 new_user: tuple[str, str]) -> None:
    user, password = new_user
    client = login(dc_app.test_client())
    # 110 is allowed but nothing listens there on loopback
    resp = add_through_pages(client, dovecot, user, password, pop_port="110",
                             pop_security="starttls")
    assert resp.status_code == 422
    assert "Connection failed" in resp.text


def test_password_changed_at_provider_then_updated(dc_app: Flask, dovecot: Dovecot,
                                                   new_user: tuple[str, str]) -> None:
    """R7 through the pages: refused password -> 'Update password' -> new one -> working."""
    user, password = new_user
    dovecot.deliver(user, message(*MAIL[0], 0))
    client = login(dc_app.test_client())
    resp = add_through_pages(client, dovecot, user, password)
    account_id = int(re.search(r"/(\d+)/connected", resp.location).group(1))  # type: ignore[union-attr]
    dovecot.set_password(user, "changed-at-provider")
    with own_source_address(dc_app):  # the refused logins come from addresses of their own
        client.post(f"{PREFIX}/{account_id}/check")
        assert wait_for_check(dc_app, account_id, timeout=30)
    index = client.get(f"{PREFIX}/")
    assert "Update password" in index.text
    # a wrong new password is refused and nothing changes
    with own_source_address(dc_app):
        bad = client.post(f"{PREFIX}/{account_id}/edit", data=account_form(
            email=f"{user}@example.com", name=f"Box {user}", pop_host="127.0.0.1",
            pop_port=str(dovecot.pop3s_port), pop_username=user, password="still-wrong"))
    assert bad.status_code == 422 and "Authentication failed" in bad.text
    good = client.post(f"{PREFIX}/{account_id}/edit", data=account_form(
        email=f"{user}@example.com", name=f"Box {user}", pop_host="127.0.0.1",
        pop_port=str(dovecot.pop3s_port), pop_username=user, password="changed-at-provider"))
    assert good.status_code == 302
    assert "Update password" not in client.get(f"{PREFIX}/").text
    client.post(f"{PREFIX}/{account_id}/check")
    assert wait_for_check(dc_app, account_id, timeout=30)
    assert "Second oldest" in client.get(f"/mail/{account_id}/").text
