"""The Mail Accounts page's one progress poll (``/progress.json``, R16): only the owner's
cards, a running fetch's bar text (also "connecting"), the last fetch's result, how
soon to ask again; and the same words on the page without JS."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from flask_popaccounts import get_state
from flask_popaccounts.services import fetching, health, scheduling
from flask_popaccounts.services.fetching import wait_for_check
from flask_popaccounts.storage.models import Account, AccountStatus
from flask_popaccounts.web import progress as web_progress
from tests.support.dovecot import Dovecot
from tests.support.mail import make_message

from .conftest import PREFIX, login
from .test_pages import add, fetching_elsewhere


def poll(client: FlaskClient) -> dict[str, Any]:
    resp = client.get(f"{PREFIX}/progress.json")
    assert resp.status_code == 200 and resp.is_json
    return resp.get_json()


def card(data: dict[str, Any], account_id: int) -> dict[str, Any]:
    (found,) = [c for c in data["accounts"] if c["id"] == account_id]
    return found


def change(app: Flask, account_id: int, **values: Any) -> None:
    with get_state(app).session_factory() as s:
        acc = s.get(Account, account_id)
        assert acc is not None
        for key, value in values.items():
            setattr(acc, key, value)
        s.commit()


def settled(app: Flask, account_id: int, stored: int | None) -> None:
    """The account as after a successful fetch that stored ``stored`` messages."""
    now = get_state(app).clock()
    with get_state(app).session_factory() as s:
        acc = s.get(Account, account_id)
        assert acc is not None
        health.record_success(app, s, acc, now=now, stored=stored)


def test_one_poll_lists_only_the_owners_accounts(app: Flask, mailbox: dict[str, str]) -> None:
    alice = login(app.test_client(), "alice")
    first = add(alice, mailbox)
    second = add(alice, mailbox, email="two@example.com", name="Two")
    bob = login(app.test_client(), "bob")
    bobs = add(bob, mailbox, email="bob@example.com", name="Bob's")
    assert sorted(c["id"] for c in poll(alice)["accounts"]) == sorted([first, second])
    assert [c["id"] for c in poll(bob)["accounts"]] == [bobs]
    fetching_elsewhere(app, bobs, done=5, total=10)  # bob's fetch is not alice's business
    assert not any(c["running"] for c in poll(alice)["accounts"])
    assert "bob@example.com" not in app.test_client().get(f"{PREFIX}/progress.json").text
    assert app.test_client().get(f"{PREFIX}/progress.json").status_code in (302, 401)


def test_a_saved_account_is_watched_until_its_first_fetch(
        app: Flask, alice: FlaskClient, mailbox: dict[str, str]) -> None:
    account_id = add(alice, mailbox)
    data = poll(alice)
    c = card(data, account_id)
    assert c["running"] is False and c["watch"] is True  # due now: its first fetch is next
    assert c["text"] == "" and c["result"] is None and c["stored"] is None
    assert c["status"]["label"] == "Waiting for the first fetch"
    assert c["last_checked"] == "Not yet" and c["message_count_text"] == "0"
    assert data["poll_ms"] == web_progress.POLL_DUE_MS
    index = alice.get(PREFIX + "/").text
    assert f'data-pa-account="{account_id}" data-pa-attempt="" data-pa-watch="1"' in index

    # Not due (the next check in five minutes): the page only looks in now and then.
    later = get_state(app).clock() + timedelta(minutes=5)
    change(app, account_id, status=AccountStatus.OK.value, next_due_at=later)
    data = poll(alice)
    assert card(data, account_id)["watch"] is False
    assert data["poll_ms"] == web_progress.POLL_IDLE_MS


def test_a_running_fetch_connecting_then_counting(
        app: Flask, alice: FlaskClient, mailbox: dict[str, str]) -> None:
    account_id = add(alice, mailbox)
    fetching_elsewhere(app, account_id)  # claimed by another process, no totals yet
    data = poll(alice)
    c = card(data, account_id)
    assert c["running"] is True and c["text"] == "Connecting…" and c["total"] == 0
    assert data["poll_ms"] == web_progress.POLL_RUNNING_MS

    change(app, account_id, progress_started_at=get_state(app).clock(),
           progress_done=1234, progress_total=2000)
    c = card(poll(alice), account_id)
    assert (c["done"], c["total"]) == (1234, 2000)
    assert c["text"] == "1,234 of 2,000 messages" and c["result"] is None
    # The page without JS shows the same bar, as of page load.
    index = alice.get(PREFIX + "/").text
    assert 'max="2000" value="1234"' in index and "1,234 of 2,000 messages" in index
    one = alice.get(f"{PREFIX}/{account_id}/progress.json").get_json()
    assert one["text"] == "1,234 of 2,000 messages" and one["progress"]["done"] == 1234


def test_the_last_fetch_result(app: Flask, alice: FlaskClient,
                               mailbox: dict[str, str]) -> None:
    account_id = add(alice, mailbox)
    change(app, account_id, message_count=2000)
    settled(app, account_id, 2000)
    c = card(poll(alice), account_id)
    assert c["running"] is False and c["watch"] is False
    assert c["result"] == "2,000 messages fetched" and c["stored"] == 2000
    assert c["message_count"] == 2000 and c["message_count_text"] == "2,000"
    assert c["status"]["label"] == "Working" and c["attempt"]
    assert c["last_checked"] not in ("", "Not yet") and c["last_checked_at"]
    settled(app, account_id, 1)
    assert card(poll(alice), account_id)["result"] == "1 message fetched"
    settled(app, account_id, 0)
    assert card(poll(alice), account_id)["result"] == "No new messages"

    # A failed fetch has no result: the status says what happened.
    from flask_popaccounts.engine.errors import ConnectionFailed

    with get_state(app).session_factory() as s:
        acc = s.get(Account, account_id)
        assert acc is not None
        health.record_failure(app, s, acc, ConnectionFailed("test"),
                              now=get_state(app).clock())
    c = card(poll(alice), account_id)
    assert c["result"] is None and c["status"]["label"].startswith("Retrying")


def test_a_real_fetch_ends_in_its_result(app: Flask, alice: FlaskClient,
                                         mailbox: dict[str, str], dovecot: Dovecot) -> None:
    dovecot.deliver_many(mailbox["pop_username"], [make_message(i) for i in range(3)])
    account_id = add(alice, mailbox)
    before = card(poll(alice), account_id)["attempt"]
    assert fetching.check_now(app, account_id)
    assert wait_for_check(app, account_id, timeout=30)
    c = card(poll(alice), account_id)
    assert c["running"] is False and c["attempt"] != before
    assert c["result"] == "3 messages fetched" and c["message_count_text"] == "3"
    with get_state(app).session_factory() as s:  # the stored bytes, as the card says them
        stored = s.get(Account, account_id).bytes_stored  # type: ignore[union-attr]
    assert stored > 1000 and c["storage_text"] == f"{stored / 1000:.1f} KB"


class FakeScheduler:
    running = True

    def __init__(self) -> None:
        self.pokes = 0

    def poke(self) -> None:
        self.pokes += 1


def test_saving_an_account_starts_its_first_fetch_now(
        app: Flask, alice: FlaskClient, mailbox: dict[str, str]) -> None:
    sched = FakeScheduler()
    get_state(app).scheduler = sched
    try:
        add(alice, mailbox)
    finally:
        get_state(app).scheduler = None
    assert sched.pokes == 1  # not at the dispatcher's next tick (30 s by default)
    scheduling.dispatch_soon(app)  # no scheduler in this process: nothing to poke


def test_the_scripts_hold_no_text_to_translate() -> None:
    """The cards' words come from the server, translated; the scripts only place them."""
    import re
    from pathlib import Path

    static = Path(web_progress.__file__).parent / "static" / "popaccounts"
    for name in ("progress.js", "show-when.js"):
        code = re.sub(r"/\*.*?\*/|//[^\n]*", "", (static / name).read_text(), flags=re.S)
        literals = re.findall(r'"((?:[^"\\]|\\.)*)"', code)
        # Text shows as words with spaces (" of ", "2 messages"), or an ellipsis.
        words = [s for s in literals if s != "use strict" and (
            s != s.strip() or re.search(r"\w\s+\w|\u2026|…", s))]
        assert words == [], (name, words)
