"""Signature, templates and storage through the pages, on real servers.

Dovecot for incoming mail, aiosmtpd for each account's SMTP server: what the
signature does is asserted on what the SMTP server received.
"""

from __future__ import annotations

import itertools
import re
from email.message import EmailMessage
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from flask_popaccounts import get_state
from flask_popaccounts.services import fetching
from flask_popaccounts.storage.models import Account, Folder, Message, Template
from tests.support.dovecot import Dovecot
from tests.support.mail import make_message
from tests.support.smtpd import SMTPServers
from tests.web.conftest import PREFIX, account_form, login

_n = itertools.count(1)


def setup_account(client: FlaskClient, dovecot: Dovecot, smtpd: SMTPServers,
                  name: str) -> tuple[int, str, str]:
    """A Dovecot user added through the wizard, sending through the STARTTLS server."""
    n = next(_n)
    user, password = f"sig{n}x{id(client) % 10000}", f"sig-secret-{n}"
    dovecot.add_user(user, password)
    email = f"{user}@example.com"
    smtpd.add_user(user, password, senders={email})
    resp = client.post(f"{PREFIX}/add/pop3/other", data=account_form(
        email=email, name=name, pop_host="127.0.0.1", pop_port=str(dovecot.pop3s_port),
        pop_security="ssl", pop_username=user, password=password))
    assert resp.status_code == 302, resp.text
    account_id = int(re.search(r"/(\d+)/connected", resp.location).group(1))  # type: ignore[union-attr]
    resp = client.post(f"{PREFIX}/{account_id}/outgoing", data={
        "mode": "custom", "smtp_host": "127.0.0.1", "smtp_port": str(smtpd.submission_port),
        "smtp_security": "starttls", "auth_mode": "same", "smtp_username": "",
        "smtp_password": ""})
    assert resp.status_code == 302, resp.text
    return account_id, user, email


def form_values(page: str) -> dict[str, str]:
    """The compose form as a browser without JavaScript would post it."""
    out: dict[str, str] = {}
    for m in re.finditer(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page):
        out[m.group(1)] = _unescape(m.group(2))
    for m in re.finditer(r'<input id="(\w+)" name="\w+" type="text"[^>]*value="([^"]*)"', page):
        out[m.group(1)] = _unescape(m.group(2))
    body = re.search(r'<textarea id="body"[^>]*>(.*?)</textarea>', page, re.S)
    assert body, page
    # a browser posts textarea lines with CRLF
    out["body"] = _unescape(body.group(1)).replace("\n", "\r\n")
    sel = re.search(r'<option value="(\d+)" selected>', page)
    if sel:
        out["account_id"] = sel.group(1)
    return out


def _unescape(text: str) -> str:
    import html

    return html.unescape(text)


def received(smtpd: SMTPServers, rcpt: str) -> EmailMessage:
    return smtpd.received(rcpt=rcpt)[-1].message


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def save_signature(client: FlaskClient, account_id: int, **over: Any) -> Any:
    data = {"text": "", "html": "", "placement": "below", "on_new": "y", "on_reply": "y",
            "on_forward": "y"}
    data.update(over)
    for key in ("on_new", "on_reply", "on_forward"):
        if not data[key]:
            del data[key]
    return client.post(f"{PREFIX}/{account_id}/signature", data=data)


def deliver_and_fetch(app: Flask, client: FlaskClient, dovecot: Dovecot, user: str,
                      account_id: int, subject: str) -> int:
    dovecot.deliver(user, (
        f"From: Ann Sender <ann@example.org>\r\nTo: {user}@example.com\r\n"
        f"Subject: {subject}\r\nDate: Tue, 01 Jul 2025 09:00:00 +0000\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@example.org>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nOriginal words here.\r\n").encode())
    assert client.post(f"{PREFIX}/{account_id}/check").status_code == 302
    assert fetching.wait_for_check(app, account_id, timeout=30)
    with get_state(app).session_factory() as s:
        mid = s.scalar(select(Message.id).where(Message.account_id == account_id,
                                                Message.subject == subject))
    assert mid is not None
    return int(mid)


def test_signature_applied_on_send_new_reply_forward_and_from_switch(
        send_app: Flask, dovecot: Dovecot, smtpd: SMTPServers) -> None:
    client = login(send_app.test_client())
    a_id, a_user, _a_email = setup_account(client, dovecot, smtpd, "Home")
    b_id, b_user, b_email = setup_account(client, dovecot, smtpd, "Work")

    # A: text + HTML (sanitised), below, new + reply only. B: above, everywhere.
    resp = save_signature(client, a_id, text="Ann A.\nHome office",
                          html='<p><b>Ann A.</b> <a href="javascript:alert(1)">x</a>'
                               '<script>alert(2)</script><img src="https://t.example/p.gif">'
                               '</p>', on_forward="")
    assert resp.status_code == 302, resp.text
    # B typed the separator line itself: it still appears once
    assert save_signature(client, b_id, text="-- \nBob at Work",
                          placement="above").status_code == 302
    page = client.get(f"{PREFIX}/{a_id}/signature").text
    assert "<b>Ann A.</b>" in page and "<script>" not in page and "javascript:" not in page
    assert "t.example" not in page  # remote image dropped
    preview = client.post(f"{PREFIX}/{a_id}/signature", data={
        "text": "Draft sig", "html": "", "placement": "below", "on_new": "y", "preview": "1"})
    assert preview.status_code == 200 and "Draft sig" in preview.text
    assert "(not saved yet)" in preview.text
    assert "Ann A." in client.get(f"{PREFIX}/{a_id}/signature").text  # preview did not save

    # New mail from A: the page holds A's block; sent once, with the HTML alternative.
    page = client.get(f"/compose?account_id={a_id}").text
    form = form_values(page)
    assert form["sig_for"] == str(a_id) and "-- \r\nAnn A.\r\nHome office" in form["body"]
    form.update(to="Zed <zed1@example.org>", subject="Hello",
                body="Hi Zed,\r\n" + form["body"])
    resp = client.post("/compose", data=form)
    assert resp.status_code == 302, resp.text
    msg = received(smtpd, "zed1@example.org")
    text = text_of(msg)
    assert text.startswith("Hi Zed,\n") and text.count("Ann A.") == 1
    assert text.rstrip().endswith("-- \nAnn A.\nHome office")
    html_part = msg.get_body(("html",))
    assert html_part is not None
    html = html_part.get_content()
    assert "<b>Ann A.</b>" in html and "<script" not in html and "javascript:" not in html
    assert "Hi Zed," in html

    # Switching From without JavaScript: posted with A's block but From B -> B's block.
    form = form_values(client.get(f"/compose?account_id={a_id}").text)
    form.update(account_id=str(b_id), to="zed2@example.org", subject="Switched",
                body="Body text\r\n" + form["body"])
    assert client.post("/compose", data=form).status_code == 302
    got = received(smtpd, "zed2@example.org")
    text = text_of(got)
    assert got["From"].addresses[0].addr_spec == b_email
    assert "Ann A." not in text and text.count("Bob at Work") == 1
    assert text.count("-- \n") == 1 and "-- \nBob at Work" in text
    assert got.get_body(("html",)) is None or "Ann" not in got.get_body(("html",)).get_content()  # type: ignore[union-attr]

    # A script already swapped it (sig_for = B): the server does not add it again.
    form = form_values(client.get(f"/compose?account_id={b_id}").text)
    assert form["sig_for"] == str(b_id)
    form.update(to="zed3@example.org", subject="Once", body="Hello\r\n" + form["body"])
    assert client.post("/compose", data=form).status_code == 302
    assert text_of(received(smtpd, "zed3@example.org")).count("Bob at Work") == 1

    # Reply from A (below): the signature comes after the quoted text.
    mid = deliver_and_fetch(send_app, client, dovecot, a_user, a_id, "Lunch one")
    form = form_values(client.get(f"/mail/{a_id}/{mid}/reply").text)
    assert form["sig_mode"] == "reply"
    form.update(body="Yes please.\r\n" + form["body"])
    assert client.post("/compose", data=form).status_code == 302
    text = text_of(received(smtpd, "ann@example.org"))
    assert text.index("Yes please.") < text.index("> Original words here.") < text.index(
        "-- \nAnn A.")

    # Reply from B (above): the signature sits between the reply and the quoted text.
    mid = deliver_and_fetch(send_app, client, dovecot, b_user, b_id, "Lunch two")
    form = form_values(client.get(f"/mail/{b_id}/{mid}/reply").text)
    form.update(body="Sure.\r\n" + form["body"])
    assert client.post("/compose", data=form).status_code == 302
    text = text_of(received(smtpd, "ann@example.org"))
    assert text.index("Sure.") < text.index("-- \nBob at Work") < text.index(" wrote:")
    assert text.index("Bob at Work") < text.index("> Original words here.")

    # Forward from A: not for forwards -> no signature; from B (above the forwarded text).
    page = client.get(f"/mail/{a_id}/{deliver_and_fetch(send_app, client, dovecot, a_user, a_id, 'Fw one')}/forward").text  # noqa: E501
    form = form_values(page)
    assert "Ann A." not in form["body"] and form["sig_mode"] == "forward"
    form.update(to="fw1@example.org")
    assert client.post("/compose", data=form).status_code == 302
    assert "Ann A." not in text_of(received(smtpd, "fw1@example.org"))
    # ... and switching that forward to B (no JS) adds B's block above the forwarded text
    form.update(account_id=str(b_id), to="fw2@example.org")
    assert client.post("/compose", data=form).status_code == 302
    text = text_of(received(smtpd, "fw2@example.org"))
    assert text.index("-- \nBob at Work") < text.index("Forwarded message")


def test_templates_crud_reorder_placeholders_and_insert(
        send_app: Flask, dovecot: Dovecot, smtpd: SMTPServers) -> None:
    client = login(send_app.test_client())
    a_id, _user, a_email = setup_account(client, dovecot, smtpd, "Home")
    assert save_signature(client, a_id, text="Sig A").status_code == 302

    resp = client.post(f"{PREFIX}/{a_id}/templates/new", data={"name": ""})
    assert resp.status_code == 400 and "Give the template a name." in resp.text
    resp = client.post(f"{PREFIX}/{a_id}/templates/new", data={
        "name": "Thanks", "subject": "Thanks, {recipient_name}",
        "body": "Dear {recipient_name} <{recipient_email}>,\nthanks! ({date}, {account_name}, "
                "{my_email}) {recipient_name.__class__} {0} {oops}"})
    assert resp.status_code == 302
    page = client.get(resp.location).text
    assert "Not a placeholder, left as typed" in page and "{oops}" in page
    client.post(f"{PREFIX}/{a_id}/templates/new", data={"name": "Second", "body": "Two"})
    client.post(f"{PREFIX}/{a_id}/templates/new", data={"name": "Third", "body": "Three"})

    def order() -> list[str]:
        return re.findall(r'data-template-name="([^"]+)"', client.get(
            f"{PREFIX}/{a_id}/templates").text)

    assert order() == ["Thanks", "Second", "Third"]
    with get_state(send_app).session_factory() as s:
        ids = {t.name: t.id for t in s.scalars(select(Template))}
    assert client.post(f"{PREFIX}/{a_id}/templates/{ids['Third']}/move",
                       data={"direction": "up"}).status_code == 302
    assert order() == ["Thanks", "Third", "Second"]
    client.post(f"{PREFIX}/{a_id}/templates/{ids['Thanks']}/move", data={"direction": "down"})
    assert order() == ["Third", "Thanks", "Second"]
    resp = client.post(f"{PREFIX}/{a_id}/templates/{ids['Second']}/edit",
                       data={"name": "Second (edited)", "subject": "", "body": "Two!"})
    assert resp.status_code == 302
    client.post(f"{PREFIX}/{a_id}/templates/{ids['Third']}/delete")
    assert order() == ["Thanks", "Second (edited)"]
    bob = login(send_app.test_client(), "bob")
    assert bob.get(f"{PREFIX}/{a_id}/templates").status_code == 404
    assert bob.post(f"{PREFIX}/{a_id}/templates/{ids['Thanks']}/delete").status_code == 404

    # Insert from compose (no JS: the form is posted with Insert and comes back filled).
    form = form_values(client.get(f"/compose?account_id={a_id}").text)
    assert 'name="template_id"' in client.get(f"/compose?account_id={a_id}").text
    form.update(to="Zoë Field <zoe@example.org>", template_id=str(ids["Thanks"]),
                insert_template="1")
    before = len(smtpd.received())
    resp = client.post("/compose", data=form)
    assert resp.status_code == 200 and len(smtpd.received()) == before  # nothing sent
    filled = form_values(resp.text)
    assert filled["subject"] == "Thanks, Zoë Field"
    body = filled["body"].replace("\r\n", "\n")
    assert body.startswith("Dear Zoë Field <zoe@example.org>,\nthanks! (")
    assert f"Home, {a_email})" in body
    assert "{recipient_name.__class__} {0} {oops}" in body  # never evaluated
    assert re.search(r"\(\d{4}-\d{2}-\d{2}, ", body)
    assert body.count("-- \nSig A") == 1  # the signature stays, once
    filled.update(account_id=str(a_id))
    assert client.post("/compose", data=filled).status_code == 302
    text = text_of(received(smtpd, "zoe@example.org"))
    assert text.startswith("Dear Zoë Field") and text.count("Sig A") == 1


def test_storage_page_quota_pause_on_the_card_and_freeing_tools(
        send_app: Flask, dovecot: Dovecot, smtpd: SMTPServers) -> None:
    client = login(send_app.test_client())
    a_id, a_user, _email = setup_account(client, dovecot, smtpd, "Home")
    old = "Mon, 02 Mar 2020 09:00:00 +0000"
    dovecot.deliver_many(a_user, [make_message(i, body_size=3000, date=old) for i in range(4)])
    sizes = [len(r) for r in dovecot.server_messages(a_user)]
    limit = sum(sizes[:2]) + 10
    get_state(send_app).ext.quota = lambda owner: limit
    try:
        assert client.post(f"{PREFIX}/{a_id}/check").status_code == 302
        assert fetching.wait_for_check(send_app, a_id, timeout=30)
        card = client.get(f"{PREFIX}/").text
        assert "Paused: your mail storage is full" in card
        assert "Free space on the Storage page" in card
        assert f'href="{PREFIX}/{a_id}/signature"' in card
        assert f"{PREFIX}/storage#storage-{a_id}" in card
        assert len(dovecot.server_messages(a_user)) == 4

        page = client.get(f"{PREFIX}/storage").text
        assert "Your storage is full" in page and "Paused: storage full" in page
        assert f'data-bytes="{sum(sizes[:2])}"' in page

        # one message to Trash, then Empty Trash: the account resumes and fetches one more
        with get_state(send_app).session_factory() as s:
            trash = s.scalar(select(Folder.id).where(Folder.account_id == a_id,
                                                     Folder.role == "trash"))
            first = s.scalar(select(Message.id).where(Message.account_id == a_id)
                             .order_by(Message.id).limit(1))
            s.execute(update(Message).where(Message.id == first).values(folder_id=trash))
            s.commit()
        assert "Empty Trash" in client.get(f"{PREFIX}/storage").text
        resp = client.post(f"{PREFIX}/{a_id}/storage/empty-trash")
        assert resp.status_code == 302
        page = client.get(f"{PREFIX}/storage").text
        assert "Trash of" in page and "emptied: 1 message deleted" in page
        assert "Paused: your mail storage is full" not in client.get(f"{PREFIX}/").text

        # delete older than N days: asks first (with the numbers), then deletes
        resp = client.get(f"{PREFIX}/{a_id}/storage/delete-older")
        assert resp.status_code == 200
        resp = client.post(f"{PREFIX}/{a_id}/storage/delete-older", data={"days": "0"})
        assert resp.status_code == 400 and "from 1 to 36500" in resp.text
        resp = client.post(f"{PREFIX}/{a_id}/storage/delete-older", data={"days": "365"})
        assert resp.status_code == 200 and "Delete <bdi>1</bdi> message?" in resp.text
        with get_state(send_app).session_factory() as s:
            assert s.get(Account, a_id).message_count == 1  # type: ignore[union-attr]
        resp = client.post(f"{PREFIX}/{a_id}/storage/delete-older",
                           data={"days": "365", "confirmed": "yes"})
        assert resp.status_code == 302
        assert "1 message of" in client.get(f"{PREFIX}/storage").text
        # room again: the rest comes in
        assert client.post(f"{PREFIX}/{a_id}/check").status_code == 302
        assert fetching.wait_for_check(send_app, a_id, timeout=30)
        with get_state(send_app).session_factory() as s:
            account = s.get(Account, a_id)
            assert account is not None and account.status == "ok"
            assert account.fetched_total == 4
    finally:
        get_state(send_app).ext.quota = None
    bob = login(send_app.test_client(), "bob")
    assert bob.post(f"{PREFIX}/{a_id}/storage/empty-trash").status_code == 404
    assert bob.get(f"{PREFIX}/{a_id}/storage/delete-older").status_code == 404
