"""Headless Chromium through the example webmail's folders and message actions, in
English and in Arabic (the language switch in the top bar): the side pane is on the
right in Arabic, and an address in the From column still reads left to right."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.example_mail import T0, add_account, chunks_of, file_message, state
from tests.web.conftest import make_example

from .conftest import LiveServer
from .test_accounts_browser import sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def webmail(tmp_path: Path) -> Iterator[tuple[LiveServer, dict[str, int]]]:
    """The example webmail (CSRF on) with alice's Work account: Inbox, Sent and a
    folder a filter files invoices into."""
    app = make_example(tmp_path, WTF_CSRF_ENABLED=True)
    aid = add_account(app)
    ids = {
        "aid": aid,
        "older": file_message(app, aid, "Older inbox", sent_at=T0 - timedelta(days=1)),
        "newer": file_message(app, aid, "Newer inbox"),
        "sent": file_message(app, aid, "Sent reply", folder="sent", frm="me@example.com",
                             to="Dana <dana@example.org>"),
        "bill": file_message(app, aid, "فاتورة الشهر", folder="Bills",
                             frm="سارة <sara@example.org>"),
    }
    with LiveServer(app) as server:
        yield server, ids


def rows(page: Any) -> list[str]:
    return page.locator("table.list tbody tr td:nth-child(2) a").all_inner_texts()


def test_folders_and_message_actions_in_english(
        page: Any, webmail: tuple[LiveServer, dict[str, int]]) -> None:
    server, ids = webmail
    aid = ids["aid"]
    sign_in(page, server)
    assert rows(page) == ["Newer inbox", "Older inbox"]  # the Inbox: inbox mail only
    pane = page.get_by_role("navigation", name="Accounts")

    pane.get_by_role("link", name=re.compile("^Sent")).click()
    page.wait_for_url(re.compile(rf"/mail/{aid}/folder/\d+/$"))
    assert rows(page) == ["Sent reply"]
    assert page.locator("h2.folder-title").inner_text() == "Sent"
    pane.get_by_role("link", name=re.compile("^Bills")).click()
    assert rows(page) == ["فاتورة الشهر"]
    assert "1 unread message" in pane.get_by_role("link", name=re.compile("^Bills")).inner_text()

    # open a message, mark it unread again: back in its folder, counted unread
    page.get_by_role("link", name="فاتورة الشهر").click()
    page.wait_for_url(re.compile(rf"/mail/{aid}/{ids['bill']}$"))
    assert page.locator("dl.msg-headers").inner_text().startswith("From")
    assert pane.get_by_role("link", name=re.compile("^Bills")).locator(".unread").count() == 0
    page.get_by_role("button", name="Mark unread").click()
    page.wait_for_url(re.compile(rf"/mail/{aid}/folder/\d+/$"))
    assert page.locator("tr.unread").count() == 1
    bills = pane.get_by_role("link", name=re.compile("^Bills"))
    assert bills.locator(".unread").inner_text() == "1"

    # move from the message page, into the Inbox
    page.get_by_role("link", name="فاتورة الشهر").click()
    page.get_by_label("Move to").select_option(label="Inbox")
    page.get_by_role("button", name="Move", exact=True).click()
    assert "1 message moved to" in page.get_by_role("status").first.inner_text()
    pane.get_by_role("link", name=re.compile("^Inbox")).click()
    assert rows(page) == ["فاتورة الشهر", "Newer inbox", "Older inbox"]

    # delete from the list (to Trash), then for good from Trash, after the question
    page.get_by_role("checkbox", name="Older inbox").check()
    page.get_by_role("button", name="Delete", exact=True).click()
    assert "1 message moved to Trash." in page.content()
    assert "Older inbox" not in rows(page)
    pane.get_by_role("link", name=re.compile("^Trash")).click()
    assert rows(page) == ["Older inbox"]
    page.get_by_role("checkbox", name="Older inbox").check()
    page.get_by_role("button", name="Delete for good").click()
    assert page.get_by_role("heading", name="Delete for good?").is_visible()
    page.get_by_role("button", name="Delete for good").click()
    assert "1 message deleted for good." in page.content()
    assert rows(page) == [] and "This folder is empty." in page.content()
    assert chunks_of(server.app, ids["older"]) == 0
    counters = state(server.app, aid)
    assert counters["message_count"] == counters["true_count"] == 3
    assert counters["bytes_stored"] == counters["true_bytes"]


def test_arabic_pane_on_the_right_and_addresses_left_to_right(
        page: Any, webmail: tuple[LiveServer, dict[str, int]]) -> None:
    server, ids = webmail
    aid = ids["aid"]
    sign_in(page, server)
    english_pane = page.locator("nav.pane").bounding_box()
    english_main = page.locator("main").bounding_box()
    assert english_pane["x"] < english_main["x"]  # on the left in English

    page.get_by_role("button", name="العربية").click()
    page.wait_for_url(re.compile(rf"/mail/{aid}/$"))
    html = page.locator("html")
    assert (html.get_attribute("lang"), html.get_attribute("dir")) == ("ar", "rtl")
    assert page.get_by_role("button", name="العربية").get_attribute("aria-pressed") == "true"
    pane = page.get_by_role("navigation", name="الحسابات")
    box, main = pane.bounding_box(), page.locator("main").bounding_box()
    assert box["x"] >= main["x"] + main["width"] - 1  # the side pane is on the right

    # an address in the From column reads left to right inside its <bdi>
    pane.get_by_role("link", name=re.compile("^المرسل")).click()
    who = page.locator("table.list tbody td:first-child bdi").first
    assert who.inner_text() == "Dana <dana@example.org>"
    assert who.evaluate("el => getComputedStyle(el).direction") == "ltr"
    assert who.evaluate("el => el.matches(':dir(ltr)')")
    td = page.locator("table.list tbody td:first-child").first
    assert td.evaluate("el => getComputedStyle(el).direction") == "rtl"  # the page's
    # laid out left to right: its first character ("D") left of its last (">")
    first, last = who.evaluate("""el => {
        const t = el.firstChild, r = document.createRange();
        const x = i => { r.setStart(t, i); r.setEnd(t, i + 1);
                         return r.getBoundingClientRect().x; };
        return [x(0), x(t.length - 1)]; }""")
    assert first < last

    # folders and actions in Arabic: open the Bills message, move it to Trash, delete it
    pane.get_by_role("link", name=re.compile("^Bills")).click()
    page.get_by_role("link", name="فاتورة الشهر").click()
    sender = page.locator("dl.msg-headers dd bdi").first
    assert sender.inner_text() == "سارة <sara@example.org>"
    page.get_by_role("button", name="حذف", exact=True).click()
    assert "نُقلت رسالة واحدة إلى سلة المهملات." in page.content()
    pane.get_by_role("link", name=re.compile("^سلة المهملات")).click()
    assert rows(page) == ["فاتورة الشهر"]
    page.get_by_role("link", name="فاتورة الشهر").click()
    page.get_by_role("button", name="حذف نهائي").click()
    assert page.get_by_role("heading", name="حذف نهائي؟").is_visible()
    page.get_by_role("button", name="حذف نهائي").click()
    assert "حُذفت رسالة واحدة نهائيًا." in page.content()
    assert chunks_of(server.app, ids["bill"]) == 0

    # the compose page: styled, with the side pane, the address fields left to right
    page.get_by_role("link", name="إنشاء رسالة").first.click()
    assert page.get_by_role("navigation", name="الحسابات").is_visible()
    to = page.get_by_label("إلى", exact=True)
    assert to.evaluate("el => getComputedStyle(el).direction") == "ltr"
    assert to.bounding_box()["width"] > 300  # not a bare browser control
    assert page.locator("textarea#body").evaluate(
        "el => getComputedStyle(el).borderTopLeftRadius") == "6px"

    # and back to English
    page.get_by_role("button", name="English").click()
    assert page.locator("html").get_attribute("dir") == "ltr"
    assert page.get_by_role("heading", name="New message").is_visible()
