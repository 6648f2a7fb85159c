"""Hostile mail as stored and shown (issue 11, items 11-15), end to end: each message is
delivered to a real Dovecot user, fetched by the app ("Check now"), and read through the
example webmail's mailbox and message pages; the stored bytes are the delivered bytes."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_popaccounts.config import DEFAULTS
from flask_popaccounts.services.fetching import wait_for_check
from tests.support.dovecot import Dovecot
from tests.support.mail import nested

from .conftest import PREFIX, account_form, dovecot_config, login

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


@pytest.fixture
def dc_app(make_app: Any, dovecot: Dovecot) -> Flask:
    app: Flask = make_app(**dovecot_config(dovecot))
    return app


def fetch_into_app(app: Flask, dovecot: Dovecot, user: str, password: str,
                   messages: list[bytes]) -> tuple[FlaskClient, int]:
    """Deliver ``messages``, add the mailbox through the pages, Check now, wait."""
    for raw in messages:
        dovecot.deliver(user, raw)
    client = login(app.test_client())
    resp = client.post(f"{PREFIX}/add/pop3/other", data=account_form(
        email=f"{user}@example.com", name=f"Box {user}", pop_host="127.0.0.1",
        pop_port=str(dovecot.pop3s_port), pop_username=user, password=password))
    assert resp.status_code == 302, resp.text
    account_id = int(re.search(r"/(\d+)/connected", resp.location).group(1))  # type: ignore[union-attr]
    client.post(f"{PREFIX}/{account_id}/check")
    assert wait_for_check(app, account_id, timeout=60)
    return client, account_id


def rows(client: FlaskClient, account_id: int) -> list[tuple[str, str, str]]:
    """The mailbox list as shown: (message page link, sender, subject) per row."""
    box = client.get(f"/mail/{account_id}/")
    assert box.status_code == 200
    return re.findall(r'<tr class="(?:unread|read)" data-message-id="\d+">\s*<td>(.*?)</td>\s*'
                      r'<td><a href="([^"]+)">(.*?)</a>', box.text, re.S)


def original(client: FlaskClient, link: str) -> bytes:
    resp = client.get(f"{link}/original")
    assert resp.status_code == 200
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    return resp.data


def test_a_message_nested_a_thousand_levels_deep_is_shown_and_its_rest_downloadable(
        dc_app: Flask, dovecot: Dovecot, new_user: tuple[str, str]) -> None:
    raw = nested(1000)
    client, account_id = fetch_into_app(dc_app, dovecot, *new_user, [raw])
    [(sender, link, subject)] = rows(client, account_id)
    assert subject == "<bdi>Deep</bdi>" and "deep@example.org" in sender

    page = client.get(link)
    assert page.status_code == 200  # was 500 (RecursionError)
    assert 'id="too-deep"' in page.text
    parts = re.findall(r'<a href="([^"]+/part/[^"]+)" download><bdi>([^<]+)</bdi></a>', page.text)
    assert len(parts) == 1 and parts[0][1].endswith(".eml")
    part = client.get(parts[0][0])
    assert part.status_code == 200
    assert part.headers["Content-Type"] == "application/octet-stream"
    # The part is the rest of the message as written: 32 levels are opened above it.
    assert part.data.startswith(b'Content-Type: multipart/mixed; boundary="b32"\r\n')
    assert b"At the bottom of the well." in part.data and part.data in raw
    assert original(client, link) == raw  # stored exactly as delivered


def test_fields_after_a_400_kb_header_block_are_shown(
        dc_app: Flask, dovecot: Dovecot, new_user: tuple[str, str]) -> None:
    trace = b"".join(b"X-Trace-%d: " % i + b"t" * 90 + b"\r\n" for i in range(4000))
    raw = (b"Received: from a.example by b.example; Mon, 30 Jun 2025 08:00:00 +0000\r\n"
           + trace + b"From: Late Sender <late@example.org>\r\nTo: me@example.com\r\n"
           b"Subject: Found after the trace\r\nDate: Wed, 02 Jul 2025 11:00:00 +0000\r\n"
           b"Message-ID: <late-header@example.org>\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n\r\nThe body after 400 KB.\r\n")
    assert len(trace) > 400 * 1024
    client, account_id = fetch_into_app(dc_app, dovecot, *new_user, [raw])
    [(sender, link, subject)] = rows(client, account_id)
    assert subject == "<bdi>Found after the trace</bdi>"
    assert sender == "<bdi>Late Sender &lt;late@example.org&gt;</bdi>"
    box = client.get(f"/mail/{account_id}/").text
    assert '<time datetime="2025-07-02T11:00:00+00:00">' in box  # the Date, not Received
    page = client.get(link).text
    assert "Found after the trace" in page and "The body after 400 KB." in page
    assert original(client, link) == raw
    reply = client.get(f"{link}/reply").text
    assert 'value="&lt;late-header@example.org&gt;"' in reply  # In-Reply-To from Message-ID


def test_two_subject_fields_show_the_first_everywhere(
        dc_app: Flask, dovecot: Dovecot, new_user: tuple[str, str]) -> None:
    raw = (b"From: Twice <twice@example.org>\r\nTo: me@example.com\r\nSubject: First\r\n"
           b"Date: Tue, 01 Jul 2025 10:00:00 +0000\r\nSubject: Second\r\n"
           b"Message-ID: <twice@example.org>\r\n\r\nBody.\r\n")
    client, account_id = fetch_into_app(dc_app, dovecot, *new_user, [raw])
    [(_sender, link, subject)] = rows(client, account_id)
    assert subject == "<bdi>First</bdi>"
    page = client.get(link).text
    assert "<title>First · Example Webmail</title>" in page
    assert "<h1><bdi>First</bdi></h1>" in page and "Second" not in page
    assert 'name="subject" type="text" size="60" value="Re: First"' in client.get(
        f"{link}/reply").text
    assert 'value="Fwd: First"' in client.get(f"{link}/forward").text
    assert original(client, link) == raw


def test_bidi_controls_cannot_reorder_subjects_or_senders(
        dc_app: Flask, dovecot: Dovecot, new_user: tuple[str, str]) -> None:
    name = base64.b64encode(f"{RLO}Bank{BIDI}".encode()).decode()
    subject = base64.b64encode(f"Invoice {RLO}gnp.exe".encode()).decode()
    raw = (f"From: =?utf-8?b?{name}?= <bank@example.org>\r\nTo: me@example.com\r\n"
           f"Subject: =?utf-8?b?{subject}?=\r\nDate: Tue, 01 Jul 2025 10:00:00 +0000\r\n"
           f"Message-ID: <bidi@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n"
           f"\r\nPay now.\r\n").encode()
    client, account_id = fetch_into_app(dc_app, dovecot, *new_user, [raw])
    [(sender, link, shown)] = rows(client, account_id)
    assert shown == "<bdi>Invoice gnp.exe</bdi>"  # read as written, not as "exe.png"
    assert sender == "<bdi>Bank &lt;bank@example.org&gt;</bdi>"
    page = client.get(link).text
    reply = client.get(f"{link}/reply").text
    forward = client.get(f"{link}/forward").text
    for text in (client.get(f"/mail/{account_id}/").text, page, reply, forward):
        assert not any(ch in text for ch in BIDI)
    assert "<title>Invoice gnp.exe · Example Webmail</title>" in page
    assert "<h1><bdi>Invoice gnp.exe</bdi></h1>" in page
    assert 'value="Re: Invoice gnp.exe"' in reply
    assert original(client, link) == raw  # the stored message keeps every byte


def test_account_names_are_shown_by_the_same_rule(
        dc_app: Flask, dovecot: Dovecot, new_user: tuple[str, str]) -> None:
    user, password = new_user
    client = login(dc_app.test_client())
    resp = client.post(f"{PREFIX}/add/pop3/other", data=account_form(
        email=f"{user}@example.com", name=f"Work {RLO}gnp.exe", pop_host="127.0.0.1",
        pop_port=str(dovecot.pop3s_port), pop_username=user, password=password))
    assert resp.status_code == 302, resp.text
    for url in (f"{PREFIX}/", "/mail/", f"{PREFIX}/send-as"):
        text = client.get(url, follow_redirects=True).text
        assert "<bdi>Work gnp.exe</bdi>" in text and RLO not in text, url


def test_security_headers_keep_a_views_own_and_can_be_turned_off(make_app: Any) -> None:
    client = login(make_app().test_client())
    page = client.get(f"{PREFIX}/")
    assert page.headers["Content-Security-Policy"] == DEFAULTS[
        "POPACCOUNTS_CONTENT_SECURITY_POLICY"]
    assert "'unsafe-inline'" not in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "same-origin"
    assert client.get("/mail/").headers["Content-Security-Policy"].startswith("default-src")

    app = make_app(POPACCOUNTS_CONTENT_SECURITY_POLICY="")  # the host sends its own

    @app.route("/host-page")
    def host_page() -> Any:
        return "hi", 200, {"Content-Security-Policy": "default-src 'none'",
                           "Referrer-Policy": "no-referrer"}

    client = login(app.test_client())
    assert "Content-Security-Policy" not in client.get(f"{PREFIX}/").headers
    own = client.get("/host-page").headers
    assert own["Content-Security-Policy"] == "default-src 'none'"  # not replaced
    assert own["Referrer-Policy"] == "no-referrer" and own["X-Content-Type-Options"] == "nosniff"
