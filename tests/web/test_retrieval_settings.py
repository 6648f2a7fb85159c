"""Retrieval settings (issue 13, Zoho's "POP retrieval settings") end to end: the wizard
and the edit page -> services -> the engine -> the real Dovecot -> the store.

Where mail goes (the Inbox, a folder named after the account, an existing folder),
"mark as read on arrival", and the first import "only mail that arrives from now on"
(R17: POP cannot select by date, so the UIDLs listed at the first check are recorded as
seen, never downloaded and never deleted from the server).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from flask_popaccounts import get_state
from flask_popaccounts.services.fetching import wait_for_check
from flask_popaccounts.storage.mailbox import read_raw
from flask_popaccounts.storage.models import Account, Folder, Message, UidlEntry
from tests.support.dovecot import Dovecot

from .conftest import PREFIX, account_form, login


def mail(n: int, subject: str = "") -> bytes:
    return (f"From: Sender {n} <s{n}@example.org>\r\nTo: me@example.com\r\n"
            f"Subject: {subject or f'Message {n}'}\r\n"
            f"Date: Tue, 01 Jul 2025 09:{n:02d}:00 +0000\r\n"
            f"Message-ID: <retrieval-{n}-{subject[:4]}@example.org>\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\nBody {n}.\r\n").encode()


def add(client: FlaskClient, dovecot: Dovecot, user: str, password: str, **over: Any
        ) -> int:
    form = account_form(email=f"{user}@example.com", name=f"Box {user}",
                        pop_host="127.0.0.1", pop_port=str(dovecot.pop3s_port),
                        pop_security="ssl", pop_username=user, password=password)
    form.update(over)
    resp = client.post(f"{PREFIX}/add/pop3/other", data=form)
    assert resp.status_code == 302, resp.text
    return int(re.search(r"/(\d+)/connected", resp.location).group(1))  # type: ignore[union-attr]


def check(app: Flask, client: FlaskClient, account_id: int) -> None:
    assert client.post(f"{PREFIX}/{account_id}/check").status_code == 302
    assert wait_for_check(app, account_id, timeout=30)
    with get_state(app).session_factory() as s:
        row = s.get(Account, account_id)
        assert row is not None and row.status == "ok", (row.status, row.last_error_code)


def stored(app: Flask, account_id: int) -> list[tuple[str, str, bool, bytes]]:
    """(folder name, subject, read, raw bytes) of every stored message, by sent date."""
    with get_state(app).session_factory() as s:
        rows = s.execute(select(Message, Folder.name).join(Folder, Folder.id == Message.folder_id)
                         .where(Message.account_id == account_id).order_by(Message.sent_at))
        return [(name, m.subject, m.is_read, read_raw(s, m.id)) for m, name in rows]


def ledger(app: Flask, account_id: int) -> dict[str, bool]:
    """UIDL -> seen only (not stored)."""
    with get_state(app).session_factory() as s:
        return {u.uidl: u.seen_only for u in s.scalars(
            select(UidlEntry).where(UidlEntry.account_id == account_id))}


def folders(app: Flask, account_id: int) -> dict[str, int]:
    with get_state(app).session_factory() as s:
        return {f.name: f.id for f in s.scalars(select(Folder).where(
            Folder.account_id == account_id))}


def edit_form(app: Flask, account_id: int, **over: Any) -> dict[str, Any]:
    with get_state(app).session_factory() as s:
        row = s.get(Account, account_id)
        assert row is not None
        form = account_form(email=row.email, name=row.name, pop_host=row.pop_host,
                            pop_port=str(row.pop_port), pop_security="ssl",
                            pop_username=row.pop_username, password="")
    form.update(over)
    return form


@pytest.mark.parametrize("policy", ["delete", "after_days"])
def test_from_now_on_fetches_nothing_old_and_everything_new(
        app: Flask, dovecot: Dovecot, new_user: tuple[str, str], policy: str) -> None:
    user, password = new_user
    old = [mail(i) for i in range(1, 4)]
    dovecot.deliver_many(user, old)
    client = login(app.test_client())
    page = client.get(f"{PREFIX}/add/pop3/other").text
    assert "POP cannot choose mail by date" in page and "never deleted from the server" in page
    aid = add(client, dovecot, user, password, first_import="new", delete_policy=policy,
              delete_after_days="1")

    check(app, client, aid)
    assert stored(app, aid) == []  # nothing old downloaded
    seen = ledger(app, aid)
    assert len(seen) == 3 and all(seen.values())  # the 3 UIDLs recorded as seen
    assert sorted(dovecot.server_messages(user)) == sorted(old)  # and left on the server

    new = [mail(i) for i in (4, 5)]
    dovecot.deliver_many(user, new)
    check(app, client, aid)
    got = stored(app, aid)
    assert [raw for _f, _s, _r, raw in got] == new  # exactly those 2, byte for byte
    assert [(f, r) for f, _s, r, _raw in got] == [("Inbox", False), ("Inbox", False)]
    with get_state(app).session_factory() as s:
        row = s.get(Account, aid)
        assert row is not None and row.import_only_new is False and row.message_count == 2
    if policy == "after_days":  # a year later: what was stored goes, what was seen stays
        from tests.support.clock import FakeClock, use_clock

        clock = FakeClock()
        clock.advance(days=400)
        use_clock(app, clock)
    check(app, client, aid)
    assert sorted(dovecot.server_messages(user)) == sorted(old)  # the new 2 deleted, not these
    assert len(stored(app, aid)) == 2 and len(ledger(app, aid)) == 5


def test_all_mail_is_the_default(app: Flask, dovecot: Dovecot,
                                 new_user: tuple[str, str]) -> None:
    user, password = new_user
    dovecot.deliver_many(user, [mail(1), mail(2)])
    client = login(app.test_client())
    page = client.get(f"{PREFIX}/add/pop3/other").text
    assert re.search(r'<input checked id="first_import-0" name="first_import" type="radio" '
                     r'value="all">', page)
    assert re.search(r'<input checked id="deliver_to-0" name="deliver_to" type="radio" '
                     r'value="inbox">', page)
    assert 'value="folder"' not in page  # a new account has no folder of its own yet
    aid = add(client, dovecot, user, password)  # no retrieval field posted: the defaults
    check(app, client, aid)
    assert [(f, r) for f, _s, r, _raw in stored(app, aid)] == [("Inbox", False)] * 2
    assert not any(ledger(app, aid).values())


def test_account_named_folder_created_and_filters_win(
        app: Flask, dovecot: Dovecot, new_user: tuple[str, str]) -> None:
    user, password = new_user
    client = login(app.test_client())
    aid = add(client, dovecot, user, password, name="Old ISP", deliver_to="account",
              mark_read="y")
    assert "Old ISP" in folders(app, aid)  # made at once: the side pane shows it
    assert "Old ISP" in client.get(f"/mail/{aid}/").text
    assert client.post(f"{PREFIX}/{aid}/filters/new", data={
        "name": "Bills", "enabled": "y", "match": "all", "cond-0-field": "subject",
        "cond-0-op": "contains", "cond-0-value": "invoice", "cond-0-header": "",
        "act-0-kind": "move", "act-0-value": "Bills"}).status_code == 302
    dovecot.deliver_many(user, [mail(1, "Your invoice"), mail(2, "Hello")])
    check(app, client, aid)
    # the filter's move wins over the destination; "mark as read" applies to both
    assert [(f, s, r) for f, s, r, _raw in stored(app, aid)] == [
        ("Bills", "Your invoice", True), ("Old ISP", "Hello", True)]


def test_existing_folder_chosen_on_the_edit_page(app: Flask, dovecot: Dovecot,
                                                 new_user: tuple[str, str]) -> None:
    user, password = new_user
    dovecot.deliver(user, mail(1))
    client = login(app.test_client())
    aid = add(client, dovecot, user, password)
    check(app, client, aid)
    with get_state(app).session_factory() as s:
        s.add(Folder(account_id=aid, name="Archive", role="custom"))
        s.commit()
    archive = folders(app, aid)["Archive"]
    page = client.get(f"{PREFIX}/{aid}/edit").text
    assert 'value="folder"' in page and f'<option value="{archive}">Archive</option>' in page
    assert 'name="first_import"' not in page and "already done" in page

    resp = client.post(f"{PREFIX}/{aid}/edit", data=edit_form(
        app, aid, deliver_to="folder", deliver_folder=str(archive), mark_read="y",
        first_import="new"))  # (not offered any more: ignored)
    assert resp.status_code == 302, resp.text
    with get_state(app).session_factory() as s:
        row = s.get(Account, aid)
        assert row is not None
        assert (row.deliver_to, row.deliver_folder_id, row.mark_read, row.import_only_new) == (
            "folder", archive, True, False)
    page = client.get(f"{PREFIX}/{aid}/edit").text
    assert f'<option selected value="{archive}">Archive</option>' in page

    dovecot.deliver_many(user, [mail(2), mail(3)])
    check(app, client, aid)
    assert [(f, r) for f, _s, r, _raw in stored(app, aid)] == [
        ("Inbox", False), ("Archive", True), ("Archive", True)]


def test_the_fields_validate(app: Flask, dovecot: Dovecot, new_user: tuple[str, str]) -> None:
    user, password = new_user
    client = login(app.test_client())
    aid = add(client, dovecot, user, password)
    with get_state(app).session_factory() as s:
        s.add(Folder(account_id=aid, name="Mine", role="custom"))
        s.commit()
    mine = folders(app, aid)
    bob = login(app.test_client(), "bob")
    bob_user = f"{user}bob"
    dovecot.add_user(bob_user, "bob-secret")
    bob_aid = add(bob, dovecot, bob_user, "bob-secret", deliver_to="account")
    theirs = folders(app, bob_aid)

    # a folder of another account (another user's), and this account's Sent: 404-style
    for folder_id in (theirs[f"Box {bob_user}"], theirs["Inbox"], mine["Sent"], 999_999):
        resp = client.post(f"{PREFIX}/{aid}/edit", data=edit_form(
            app, aid, deliver_to="folder", deliver_folder=str(folder_id)))
        assert resp.status_code == 404, folder_id
    # in the wizard there is no folder to choose yet; nothing is saved, no server asked
    resp = client.post(f"{PREFIX}/add/pop3/other", data=account_form(
        email="other@example.com", deliver_to="folder", deliver_folder=str(mine["Mine"])))
    assert resp.status_code == 404
    resp = client.post(f"{PREFIX}/{aid}/edit", data=edit_form(app, aid, deliver_to="folder"))
    assert resp.status_code == 400 and "Choose the folder new mail goes to." in resp.text
    resp = client.post(f"{PREFIX}/{aid}/edit", data=edit_form(app, aid, deliver_to="spam"))
    assert resp.status_code == 400
    resp = client.post(f"{PREFIX}/{aid}/edit", data=edit_form(app, aid, first_import="some"))
    assert resp.status_code == 400
    with get_state(app).session_factory() as s:
        row = s.get(Account, aid)
        assert row is not None and (row.deliver_to, row.deliver_folder_id) == ("inbox", None)
        assert len(list(s.scalars(select(Account.id)))) == 2


def test_from_now_on_on_the_edit_page_of_an_account_never_fetched(
        app: Flask, dovecot: Dovecot, new_user: tuple[str, str]) -> None:
    user, password = new_user
    dovecot.deliver_many(user, [mail(1), mail(2)])
    client = login(app.test_client())
    aid = add(client, dovecot, user, password)  # (the scheduler is off: not fetched yet)
    page = client.get(f"{PREFIX}/{aid}/edit").text
    assert 'name="first_import"' in page
    resp = client.post(f"{PREFIX}/{aid}/edit", data=edit_form(app, aid, first_import="new"))
    assert resp.status_code == 302, resp.text
    check(app, client, aid)
    assert stored(app, aid) == [] and len(ledger(app, aid)) == 2
    page = client.get(f"{PREFIX}/{aid}/edit").text
    assert 'name="first_import"' not in page
    assert "<bdi>2</bdi> messages that were on the server when the account was added" in page


def test_arabic_retrieval_settings(app: Flask, dovecot: Dovecot,
                                   new_user: tuple[str, str]) -> None:
    from tests.support.visible_text import untranslated

    user, password = new_user
    client = login(app.test_client())
    aid = add(client, dovecot, user, password, deliver_to="account")
    with get_state(app).session_factory() as s:
        s.add(Folder(account_id=aid, name="Archive", role="custom"))
        s.commit()
    for url in (f"{PREFIX}/add/pop3/other", f"{PREFIX}/{aid}/edit"):
        html = client.get(url, headers={"Accept-Language": "ar"}).text
        assert "إعدادات الاسترداد" in html and "وضع علامة مقروءة" in html, url
        assert untranslated(html) == [], url
    resp = client.post(f"{PREFIX}/{aid}/edit", data=edit_form(app, aid, deliver_to="folder"),
                       headers={"Accept-Language": "ar"})
    assert resp.status_code == 400 and untranslated(resp.text) == []
