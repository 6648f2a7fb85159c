"""Every page of the extension and of the example webmail, read in Arabic.

One user's world is built once on the real servers (Dovecot in, aiosmtpd out): an
account that fetched mail (an Arabic and an English message, a rule that moved one,
a signature, a template, a vacation reply, a verified and a pending send-as address)
beside accounts in every status the card can show. Then every GET page of the app's
URL map is read with ``Accept-Language: ar`` (a route this test cannot fill fails it,
so a new page is covered as soon as it exists), and the forms are posted wrong to see
their errors. Each page must be ``lang="ar" dir="rtl"`` and show no Latin word outside
data (``tests/support/visible_text.py``: untranslated text, or a datum not isolated).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from flask_popaccounts import get_state
from flask_popaccounts.services import fetching, progress
from flask_popaccounts.storage.models import Account, Folder, Message, SendAsAddress
from tests.filters.conftest import mail, setup_account
from tests.sending.conftest import dns_server, owner_id, smtpd  # noqa: F401 (fixtures)
from tests.support.dnsserver import DNSServer
from tests.support.dovecot import Dovecot
from tests.support.smtpd import SMTPServers
from tests.support.visible_text import untranslated
from tests.web.conftest import PASSWORDS, PREFIX, make_example

AR = {"Accept-Language": "ar"}


class World:
    app: Flask
    client: FlaskClient
    values: dict[str, Any]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, dovecot: Dovecot,
          smtpd: SMTPServers, dns_server: DNSServer,  # noqa: F811 (the fixtures)
          ) -> Iterator[World]:
    app = make_example(
        tmp_path_factory.mktemp("arabic"),
        POPACCOUNTS_ALLOW_PRIVATE_HOSTS=True, POPACCOUNTS_CA_FILE=dovecot.ca_file,
        POPACCOUNTS_ALLOWED_POP3_PORTS=(110, 995, dovecot.pop3_port, dovecot.pop3s_port),
        POPACCOUNTS_ALLOWED_SMTP_PORTS=(465, 587, smtpd.submission_port, smtpd.smtps_port),
        POPACCOUNTS_CONNECT_TIMEOUT=5, POPACCOUNTS_READ_TIMEOUT=20,
        POPACCOUNTS_SYSTEM_SMTP_HOST="127.0.0.1", POPACCOUNTS_SYSTEM_SMTP_PORT=smtpd.relay_port,
        POPACCOUNTS_SYSTEM_SMTP_SECURITY="plain",
        POPACCOUNTS_SYSTEM_SMTP_FROM="Example Webmail <no-reply@webmail.example>",
        POPACCOUNTS_DNS_NAMESERVERS=[dns_server.nameserver], POPACCOUNTS_QUOTA_BYTES=10**9)
    user, password = "arabicpages", "arabic-pages-pw"
    dovecot.add_user(user, password)
    aid = setup_account(app, dovecot, smtpd, user, password)
    dovecot.deliver_many(user, [
        mail(1, f"{user}@example.com", subject="فاتورة الشهر invoice",
             frm="سارة <sara@example.org>", body="مرحبا، هذه فاتورتك."),
        mail(2, f"{user}@example.com", subject="Weekly news"),
    ])
    client = app.test_client()
    login = client.post("/login", data={"username": "alice", "password": PASSWORDS["alice"]})
    assert login.status_code == 302
    assert client.post(f"{PREFIX}/{aid}/filters/new", data={
        "name": "Bills", "enabled": "y", "match": "all", "cond-0-field": "subject",
        "cond-0-op": "contains", "cond-0-value": "invoice", "cond-0-header": "",
        "act-0-kind": "move", "act-0-value": "Bills", "act-1-kind": "mark_read",
        "act-1-value": ""}).status_code == 302
    assert client.post(f"{PREFIX}/{aid}/signature", data={
        "text": "سارة\nExample Ltd", "html": "", "placement": "below",
        "on_new": "y"}).status_code == 302
    assert client.post(f"{PREFIX}/{aid}/templates/new", data={
        "name": "شكر", "subject": "شكرا {recipient_name}", "body": "شكرا لك."}
    ).status_code == 302
    assert client.post(f"{PREFIX}/{aid}/vacation", data={
        "enabled": "y", "starts_on": "", "ends_on": "", "subject": "في إجازة",
        "body": "سأعود قريبا.", "interval_days": "3"}).status_code == 302
    with app.app_context():
        assert fetching.fetch_account(app, aid).stored == 2
    owner = owner_id(app)
    now = datetime.now(timezone.utc)
    factory = get_state(app).session_factory
    with factory() as s:
        main = s.get(Account, aid)
        assert main is not None
        statuses: list[tuple[str, str | None, str | None]] = [
            ("needs_password", "auth_failed", None), ("needs_reauth", "token_rejected", None),
            ("retrying", "connection_failed", None),
            ("needs_attention", "certificate_invalid", None),
            ("needs_attention", "uidl_reset", None), ("paused_quota", None, None),
            ("ok", None, "dele_refused"), ("new", None, None)]
        for n, (status, code, warning) in enumerate(statuses):
            row = Account(owner_id=owner, email=f"box{n}@example.net", name=f"Box {n}",
                          send_from=f"box{n}@example.net", provider="other",
                          pop_host=f"pop{n}.example.net", pop_port=995, pop_security="ssl",
                          pop_username=f"box{n}", status=status, last_error_code=code,
                          fetch_warning=warning, next_due_at=now + timedelta(minutes=4),
                          last_success_at=now - timedelta(days=1) if status == "ok" else None,
                          message_count=n * 700, bytes_stored=n * 3_000_000,
                          secret_enc=main.secret_enc)
            s.add(row)
        s.add(Account(owner_id=owner, email="off@example.net", name="Off", enabled=False,
                      send_from="off@example.net", provider="other", pop_host="pop.off.example",
                      pop_port=995, pop_security="ssl", pop_username="off",
                      secret_enc=main.secret_enc))
        s.add(SendAsAddress(account_id=aid, owner_id=owner, address="pending@example.org",
                            kind="from"))
        s.commit()
        first = s.scalar(select(Account.id).where(Account.email == "box7@example.net"))
        message = s.scalar(select(Message).where(Message.account_id == aid)
                           .order_by(Message.id))
        assert message is not None
        pending = s.scalar(select(SendAsAddress.id).where(
            SendAsAddress.address == "pending@example.org"))
        rule = client.get(f"{PREFIX}/{aid}/filters").text
        template = client.get(f"{PREFIX}/{aid}/templates").text
        values = {
            "account_id": aid, "message_id": message.id, "part_id": "1",
            "folder_id": s.scalar(select(Folder.id).where(Folder.account_id == aid,
                                                          Folder.name == "Bills")),
            "send_as_id": pending, "provider": "other",
            "rule_id": int(re.search(r'id="rule-(\d+)"', rule).group(1)),  # type: ignore[union-attr]
            "template_id": int(re.search(r"templates/(\d+)/edit", template).group(1)),  # type: ignore[union-attr]
        }
    with app.app_context():  # a first sync in progress, as the card shows it
        progress.start(app, first)
        progress.update_local(app, first, done=300, stored=300, total=2000)
    w = World()
    w.app, w.client, w.values = app, client, values
    yield w
    with app.app_context():
        get_state(app).engine.dispose()
        from example_app import db

        db.engine.dispose()


#: Endpoints that are not pages (files, JSON, redirects into the OAuth dance).
NOT_PAGES = {"static", "popaccounts.static", "popaccounts.progress", "popaccounts.progress_all",
             "popaccounts.oauth_callback",
             "message_body", "message_part", "message_original", "home",
             "mailbox_home"}  # (a redirect to the first account once there is one)


def _pages(app: Flask, values: dict[str, Any]) -> list[str]:
    urls = []
    with app.test_request_context():
        from flask import url_for

        for rule in app.url_map.iter_rules():
            if "GET" not in (rule.methods or ()) or rule.endpoint in NOT_PAGES:
                continue
            missing = set(rule.arguments) - set(values)
            assert not missing, f"{rule.rule}: give this test values for {missing}"
            if rule.endpoint == "popaccounts.add_oauth":
                for provider in ("outlook", "office365"):
                    urls.append(url_for(rule.endpoint, provider=provider))
                continue
            if rule.endpoint == "popaccounts.add_account":
                for provider in ("gmail", "other"):
                    urls.append(url_for(rule.endpoint, provider=provider))
                continue
            urls.append(url_for(rule.endpoint, **{k: values[k] for k in rule.arguments}))
    return sorted(set(urls))


def _check(resp: Any, url: str) -> None:
    assert resp.status_code in (200, 400, 422), (url, resp.status_code)
    html = resp.get_data(as_text=True)
    assert re.search(r'<html lang="ar" dir="rtl">', html), url
    left = untranslated(html)
    assert left == [], f"{url}: {len(left)} English words a reader sees:\n" + "\n".join(left)


def test_every_page_reads_in_arabic(world: World) -> None:
    urls = _pages(world.app, world.values)
    assert len(urls) >= 25
    failures = []
    for url in urls:
        resp = world.client.get(url, headers=AR)
        try:
            _check(resp, url)
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n\n".join(failures)


#: Forms posted wrong: the errors a user reads must be Arabic too.
BAD_POSTS = [
    ("/settings/mail-accounts/add/pop3/other", {"email": "not an address", "pop_host": "",
                                                "pop_port": "25", "pop_security": "ssl",
                                                "delete_policy": "keep_then_delete",
                                                "delete_after_days": ""}),
    ("/settings/mail-accounts/{account_id}/edit", {"email": "", "pop_port": "x"}),
    ("/settings/mail-accounts/{account_id}/filters/new", {
        "name": "", "match": "all", "cond-0-field": "subject", "cond-0-op": "matches",
        "cond-0-value": "(a+)+", "act-0-kind": "forward", "act-0-value": "x@y.example"}),
    ("/settings/mail-accounts/{account_id}/templates/new", {"name": ""}),
    ("/settings/mail-accounts/{account_id}/vacation", {
        "enabled": "y", "starts_on": "2026-08-10", "ends_on": "2026-08-01", "subject": "",
        "body": "", "interval_days": "0"}),
    ("/settings/mail-accounts/{account_id}/outgoing", {"host": "localhost", "port": "25"}),
    ("/settings/mail-accounts/send-as/{send_as_id}/verify", {"code": "000000"}),
    ("/compose", {"account_id": "{account_id}", "to": "nobody", "subject": "", "body": ""}),
]


@pytest.mark.parametrize(("path", "data"), BAD_POSTS, ids=[p for p, _ in BAD_POSTS])
def test_form_errors_read_in_arabic(world: World, path: str, data: dict[str, str]) -> None:
    url = path.format(**world.values)
    form = {k: v.format(**world.values) for k, v in data.items()}
    resp = world.client.post(url, data=form, headers=AR, follow_redirects=True)
    _check(resp, url)


def test_flash_messages_read_in_arabic(world: World) -> None:
    aid = world.values["account_id"]
    resp = world.client.post(f"{PREFIX}/{aid}/disable", headers=AR, follow_redirects=True)
    _check(resp, "disable")
    resp = world.client.post(f"{PREFIX}/{aid}/enable", headers=AR, follow_redirects=True)
    _check(resp, "enable")
    assert 'class="pa-flash' in resp.get_data(as_text=True)


def test_the_same_pages_stay_english_for_english_readers(world: World) -> None:
    resp = world.client.get(f"{PREFIX}/", headers={"Accept-Language": "en-GB,en;q=0.8"})
    html = resp.get_data(as_text=True)
    assert '<html lang="en' in html and 'dir="ltr"' in html
    assert "Mail Accounts" in html
