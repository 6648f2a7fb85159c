"""The example webmail as a host: folders in the side pane, each folder's mail, the
message actions (delete to Trash then for good, move, mark read / unread), owner
scoping and CSRF, and the webmail in Arabic (its own catalogue, the language switch,
dates in the user's time zone).

The mail is filed directly through the store (tests/support/example_mail.py): the
fetch and the filters that put it there are proven elsewhere.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.support.example_mail import (
    T0,
    add_account,
    chunks_of,
    file_message,
    folder_id,
    state,
)
from tests.support.visible_text import untranslated
from tests.web.conftest import PASSWORDS, login

AR = {"Accept-Language": "ar"}


def subjects(html: str) -> list[str]:
    """The subjects of the mailbox list, in order (as test_dovecot_e2e reads them)."""
    return re.findall(r'<tr class="(?:unread|read)" data-message-id="\d+">.*?'
                      r'<a href="[^"]+"><bdi>([^<]+)</bdi></a>', html, re.S)


def world(app: Flask) -> dict[str, Any]:
    """alice's Work account: two in the Inbox, one sent, two a filter filed in Bills."""
    aid = add_account(app)
    ids = {
        "older": file_message(app, aid, "Older inbox", sent_at=T0 - timedelta(days=2)),
        "newer": file_message(app, aid, "Newer inbox", sent_at=T0),
        "sent": file_message(app, aid, "Sent reply", folder="sent",
                             frm="Me <me@example.com>", to="Dana <dana@example.org>"),
        "bill1": file_message(app, aid, "Invoice 1", folder="Bills"),
        "bill2": file_message(app, aid, "فاتورة الشهر", folder="Bills",
                              frm="سارة <sara@example.org>", sent_at=T0 + timedelta(hours=1)),
    }
    return {"aid": aid, **ids, "bills": folder_id(app, aid, "Bills"),
            "trash": folder_id(app, aid, "Trash"), "sent_f": folder_id(app, aid, "Sent"),
            "inbox": folder_id(app, aid, "Inbox")}


def act(client: FlaskClient, aid: int, action: str, *ids: int, **form: Any) -> Any:
    return client.post(f"/mail/{aid}/actions",
                       data={"action": action, "message_id": [str(i) for i in ids],
                             "next": f"/mail/{aid}/", **form})


def pane_unread(html: str, name: str) -> int:
    """The unread count the side pane shows beside a folder (0: no badge)."""
    pane = html[html.index('<nav class="pane"'):html.index("</nav>", html.index('class="pane"'))]
    m = re.search(rf'<span class="folder-name">(?:<bdi>)?{re.escape(name)}(?:</bdi>)?</span>'
                  r'(?: <span class="unread" aria-hidden="true">(\d+)</span>)?', pane)
    assert m is not None, f"{name} is not in the side pane"
    return int(m.group(1) or 0)


def test_the_inbox_lists_only_inbox_mail_and_every_folder_opens(make_app: Any) -> None:
    app = make_app()
    w = world(app)
    alice = login(app.test_client())
    aid = w["aid"]
    inbox = alice.get(f"/mail/{aid}/").text
    assert subjects(inbox) == ["Newer inbox", "Older inbox"]  # newest first by sent date
    assert "Sent reply" not in inbox and "Invoice 1" not in inbox
    # the side pane: Inbox, Sent, Trash, then the filter's folder, with unread counts
    for name, href in (("Inbox", f"/mail/{aid}/"), ("Sent", f"/mail/{aid}/folder/{w['sent_f']}/"),
                       ("Trash", f"/mail/{aid}/folder/{w['trash']}/"),
                       ("Bills", f"/mail/{aid}/folder/{w['bills']}/")):
        assert f'href="{href}"' in inbox, name
    order = [inbox.index(f'class="folder folder-{role}"')
             for role in ("inbox", "sent", "trash", "custom")]
    assert order == sorted(order)
    assert pane_unread(inbox, "Inbox") == 2 and pane_unread(inbox, "Bills") == 2
    assert pane_unread(inbox, "Sent") == 0  # a sent copy is filed read

    sent = alice.get(f"/mail/{aid}/folder/{w['sent_f']}/").text
    assert subjects(sent) == ["Sent reply"]
    assert '<th scope="col">To</th>' in sent and "Dana &lt;dana@example.org&gt;" in sent
    bills = alice.get(f"/mail/{aid}/folder/{w['bills']}/").text
    assert subjects(bills) == ["فاتورة الشهر", "Invoice 1"]
    assert '<h2 class="folder-title"><bdi>Bills</bdi></h2>' in bills  # the user's name: data
    assert 'aria-current="page"' in bills and "This folder is empty." in alice.get(
        f"/mail/{aid}/folder/{w['trash']}/").text
    # the Inbox has one address; a folder that is not the account's is not found
    again = alice.get(f"/mail/{aid}/folder/{w['inbox']}/")
    assert again.status_code == 302 and again.location == f"/mail/{aid}/"
    assert alice.get(f"/mail/{aid}/folder/999/").status_code == 404
    other = add_account(app, email="home@example.com", name="Home")
    assert alice.get(f"/mail/{other}/folder/{w['bills']}/").status_code == 404
    # the message page says where it is and goes back there
    page = alice.get(f"/mail/{aid}/{w['bill1']}").text
    assert f'<p class="back"><a href="/mail/{aid}/folder/{w["bills"]}/">Back to <bdi>Bills' in page


def test_delete_moves_to_trash_then_deletes_for_good(make_app: Any) -> None:
    app = make_app()
    w = world(app)
    alice = login(app.test_client())
    aid = w["aid"]
    before = state(app, aid)
    assert before["message_count"] == before["true_count"] == 5

    resp = act(alice, aid, "delete", w["older"])
    assert resp.status_code == 302 and resp.location == f"/mail/{aid}/"
    after = state(app, aid)
    assert after["messages"]["Older inbox"][0] == "Trash"
    # Trash still counts against the quota until it is emptied
    assert (after["message_count"], after["bytes_stored"]) == (
        before["message_count"], before["bytes_stored"])
    assert "1 message moved to Trash." in alice.get(f"/mail/{aid}/").text
    trash = alice.get(f"/mail/{aid}/folder/{w['trash']}/").text
    assert subjects(trash) == ["Older inbox"] and ">Delete for good</button>" in trash

    # deleting in Trash asks first, and nothing goes until confirmed
    ask = act(alice, aid, "delete", w["older"], next=f"/mail/{aid}/folder/{w['trash']}/")
    assert ask.status_code == 200 and "Delete for good?" in ask.text
    assert 'name="confirm" value="1"' in ask.text and "Older inbox" in ask.text
    assert chunks_of(app, w["older"]) > 0 and "Older inbox" in state(app, aid)["messages"]

    size = len(alice.get(f"/mail/{aid}/{w['older']}/original").data)
    done = act(alice, aid, "delete", w["older"], confirm="1",
               next=f"/mail/{aid}/folder/{w['trash']}/")
    assert done.status_code == 302 and done.location == f"/mail/{aid}/folder/{w['trash']}/"
    gone = state(app, aid)
    assert "Older inbox" not in gone["messages"] and chunks_of(app, w["older"]) == 0
    assert gone["message_count"] == gone["true_count"] == 4
    assert gone["bytes_stored"] == gone["true_bytes"] == before["bytes_stored"] - size
    assert alice.get(f"/mail/{aid}/{w['older']}").status_code == 404
    assert "1 message deleted for good." in alice.get(done.location).text


def test_move_and_mark_read_or_unread(make_app: Any) -> None:
    app = make_app()
    w = world(app)
    alice = login(app.test_client())
    aid = w["aid"]
    resp = act(alice, aid, "move", w["newer"], folder_id=str(w["bills"]))
    assert resp.status_code == 302
    assert state(app, aid)["messages"]["Newer inbox"][0] == "Bills"
    box = alice.get(f"/mail/{aid}/").text
    assert "1 message moved to <bdi>" not in box and "1 message moved to \u2068Bills\u2069." in box
    assert subjects(box) == ["Older inbox"] and pane_unread(box, "Bills") == 3
    # into a folder of another account of the same user: not found, nothing moves
    other = add_account(app, email="home@example.com", name="Home")
    other_trash = folder_id(app, other, "Trash")
    assert act(alice, aid, "move", w["newer"], folder_id=str(other_trash)).status_code == 404
    assert state(app, aid)["messages"]["Newer inbox"][0] == "Bills"

    # opening marks read; "Mark unread" brings the count back; "Mark read" from the list
    assert pane_unread(alice.get(f"/mail/{aid}/").text, "Inbox") == 1
    page = alice.get(f"/mail/{aid}/{w['older']}")
    assert page.status_code == 200 and state(app, aid)["messages"]["Older inbox"][1] is True
    assert pane_unread(page.text, "Inbox") == 0
    assert act(alice, aid, "unread", w["older"]).status_code == 302
    box = alice.get(f"/mail/{aid}/").text
    assert pane_unread(box, "Inbox") == 1 and '<tr class="unread"' in box
    assert "1 message marked unread." in box
    assert act(alice, aid, "read", w["bill1"], w["bill2"]).status_code == 302
    assert pane_unread(alice.get(f"/mail/{aid}/").text, "Bills") == 1  # the moved one
    # nothing selected: said, nothing done; an unknown action is refused
    empty = alice.post(f"/mail/{aid}/actions", data={"action": "read", "next": f"/mail/{aid}/"},
                       follow_redirects=True)
    assert "Select one or more messages first." in empty.text
    assert act(alice, aid, "purge", w["bill1"]).status_code == 400


def test_another_users_messages_are_not_found(make_app: Any) -> None:
    app = make_app()
    w = world(app)
    bobs = add_account(app, user="bob", email="bob@example.com", name="Bob's")
    bob_msg = file_message(app, bobs, "Bob only")
    alice = login(app.test_client())
    aid = w["aid"]
    for action in ("read", "unread", "delete", "move"):
        extra = {"folder_id": str(w["bills"])} if action == "move" else {}
        # bob's message through alice's account, alone or beside one of hers
        assert act(alice, aid, action, bob_msg, **extra).status_code == 404
        assert act(alice, aid, action, w["newer"], bob_msg, **extra).status_code == 404
        # bob's account
        assert act(alice, bobs, action, bob_msg, **extra).status_code == 404
    assert state(app, bobs)["messages"] == {"Bob only": ("Inbox", False)}
    assert state(app, aid)["messages"]["Newer inbox"] == ("Inbox", False)
    for url in (f"/mail/{aid}/{bob_msg}", f"/mail/{bobs}/{bob_msg}", f"/mail/{bobs}/",
                f"/mail/{bobs}/folder/{folder_id(app, bobs, 'Trash')}/"):
        assert alice.get(url).status_code == 404, url


def _token(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert m is not None
    return m.group(1)


def test_actions_and_the_language_switch_need_the_csrf_token(make_app: Any) -> None:
    app = make_app(WTF_CSRF_ENABLED=True)
    w = world(app)
    aid = w["aid"]
    client = app.test_client()
    token = _token(client.get("/login").text)
    assert client.post("/login", data={"username": "alice", "password": PASSWORDS["alice"],
                                       "csrf_token": token}).status_code == 302
    for action in ("read", "unread", "delete"):
        assert act(client, aid, action, w["newer"]).status_code == 400
    assert act(client, aid, "move", w["newer"], folder_id=str(w["bills"])).status_code == 400
    assert state(app, aid)["messages"]["Newer inbox"] == ("Inbox", False)
    assert client.post("/language", data={"lang": "ar", "next": "/mail/"}).status_code == 400

    token = _token(client.get(f"/mail/{aid}/").text)
    assert act(client, aid, "delete", w["newer"], csrf_token=token).status_code == 302
    assert state(app, aid)["messages"]["Newer inbox"][0] == "Trash"
    assert client.post("/language", data={"lang": "ar", "next": "/mail/",
                                          "csrf_token": token}).status_code == 302


def test_the_language_switch_and_accept_language(make_app: Any) -> None:
    app = make_app()
    w = world(app)
    aid = w["aid"]
    alice = login(app.test_client())
    html = alice.get(f"/mail/{aid}/").text
    assert '<html lang="en" dir="ltr">' in html and ">Inbox</span>" in html
    # the switch: English / العربية, each in its own language, the current one pressed
    assert re.search(r'<button type="submit" name="lang" value="ar" lang="ar" dir="rtl" '
                     r'aria-pressed="false">العربية</button>', html)
    # no choice yet: the browser's best match among en/ar
    html = alice.get(f"/mail/{aid}/", headers={"Accept-Language": "ar-SA,ar;q=0.9,en;q=0.5"}).text
    assert '<html lang="ar" dir="rtl">' in html and "صندوق الوارد" in html
    assert '<html lang="en"' in alice.get(f"/mail/{aid}/",
                                          headers={"Accept-Language": "fr,de"}).text
    # the user's choice wins over the browser, until changed; it comes back to the page
    resp = alice.post("/language", data={"lang": "ar", "next": f"/mail/{aid}/?page=1"})
    assert resp.status_code == 302 and resp.location == f"/mail/{aid}/?page=1"
    html = alice.get(f"/mail/{aid}/", headers={"Accept-Language": "en"}).text
    assert '<html lang="ar" dir="rtl">' in html and "سلة المهملات" in html
    assert 'value="ar" lang="ar" dir="rtl" aria-pressed="true"' in html
    # and so does the extension, which follows the host's selector
    settings = alice.get("/settings/mail-accounts/", headers={"Accept-Language": "en"}).text
    assert '<html lang="ar" dir="rtl">' in settings and "بريد الويب التجريبي" in settings
    back = alice.post("/language", data={"lang": "en", "next": "//evil.example/"})
    assert back.location == "/mail/"  # never off the site
    assert '<html lang="en" dir="ltr">' in alice.get(f"/mail/{aid}/", headers=AR).text
    assert alice.post("/language", data={"lang": "xx", "next": "/mail/"}).status_code == 302
    assert '<html lang="en"' in alice.get(f"/mail/{aid}/", headers=AR).text


def test_the_webmail_pages_read_in_arabic(make_app: Any) -> None:
    app = make_app()
    w = world(app)
    aid = w["aid"]
    alice = login(app.test_client())
    assert alice.post("/language", data={"lang": "ar", "next": "/mail/"}).status_code == 302
    urls = [f"/mail/{aid}/", f"/mail/{aid}/folder/{w['sent_f']}/",
            f"/mail/{aid}/folder/{w['trash']}/", f"/mail/{aid}/folder/{w['bills']}/",
            f"/mail/{aid}/{w['bill2']}", f"/mail/{aid}/{w['newer']}/reply",
            f"/mail/{aid}/{w['newer']}/forward", "/compose"]
    pages = {url: alice.get(url) for url in urls}
    assert act(alice, aid, "delete", w["older"]).status_code == 302
    pages["flash"] = alice.get(f"/mail/{aid}/folder/{w['trash']}/")
    pages["confirm"] = act(alice, aid, "delete", w["older"])
    for url, resp in pages.items():
        assert resp.status_code == 200, url
        html = resp.get_data(as_text=True)
        assert '<html lang="ar" dir="rtl">' in html, url
        assert untranslated(html) == [], (url, untranslated(html))
    box = pages[f"/mail/{aid}/"].text
    assert "صندوق الوارد" in box and "المرسل" in box and "سلة المهملات" in box
    assert "<bdi>Bills</bdi>" in box  # a folder the user named is data
    assert "حذف نهائي؟" in pages["confirm"].text
    # a page that answered a POST: the switch brings the user back to one that reads
    switch = re.search(r'class="lang-switch".*?name="next" value="([^"]*)"',
                       pages["confirm"].text, re.S)
    assert switch is not None and switch.group(1) == "/mail/"
    assert "نُقلت رسالة واحدة إلى سلة المهملات." in pages["flash"].text
    # the From column and the headers are isolated (they read left to right)
    assert '<td><bdi>Dana &lt;dana@example.org&gt;</bdi></td>' in box
    message = pages[f"/mail/{aid}/{w['bill2']}"].text
    assert "<dd><bdi>سارة &lt;sara@example.org&gt;</bdi></dd>" in message
    compose = pages["/compose"].text
    assert re.search(r'<input id="to" name="to" type="text" size="60" value="" dir="ltr"', compose)
    # the quote line, in the user's language, the sender isolated (plain text in a mail)
    assert "، كتب \u2068Dana &lt;dana@example.org&gt;\u2069:" in pages[
        f"/mail/{aid}/{w['newer']}/reply"].text
    # a <title> cannot hold <bdi>: the subject is isolated in FSI...PDI there
    subject, site = "فاتورة الشهر", "بريد الويب التجريبي"
    assert f"<title>\u2068{subject}\u2069 · {site}</title>" in message


def test_dates_in_the_users_time_zone(make_app: Any) -> None:
    """09:30 UTC is 12:30 in Riyadh (UTC+3): in the webmail's list and message page
    (Flask-Babel) and in the extension (its timezone hook), the same."""
    from flask_login import login_user

    from example_app import User, db
    from flask_popaccounts import i18n

    for tz, shown in (("UTC", "9:30"), ("Asia/Riyadh", "12:30")):
        app = make_app(EXAMPLE_TIMEZONE=tz) if tz != "UTC" else make_app()
        w = world(app)
        alice = login(app.test_client())
        box = alice.get(f"/mail/{w['aid']}/").text
        row = re.search(rf'data-message-id="{w["newer"]}">.*?'
                        r'<time datetime="([^"]+)">([^<]+)</time>', box, re.S)
        assert row is not None and row.group(1).startswith("2026-03-01T09:30")
        assert shown in row.group(2), (tz, row.group(2))
        page = alice.get(f"/mail/{w['aid']}/{w['newer']}").text
        assert re.search(rf"<time [^>]*>[^<]*{shown}:00", page), tz
        with app.test_request_context():
            login_user(db.session.scalar(db.select(User).where(User.username == "alice")))
            assert shown in i18n.format_datetime(T0.replace(tzinfo=None), "short")
