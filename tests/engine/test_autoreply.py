"""RFC 3834 decisions and the reply's headers."""

from __future__ import annotations

from email.headerregistry import Address

import pytest

from flask_popaccounts.engine import autoreply
from flask_popaccounts.engine.parse import all_headers

OWN = {"me@example.com"}


def h(extra: str = "", frm: str = "Bob <bob@example.org>", to: str = "me@example.com"):
    raw = f"From: {frm}\r\nTo: {to}\r\nSubject: Hi\r\nMessage-ID: <m1@example.org>\r\n{extra}\r\n"
    return all_headers(raw.encode())


@pytest.mark.parametrize(("extra", "frm", "to", "reason"), [
    ("", "Bob <bob@example.org>", "me@example.com", "ok"),
    ("Auto-Submitted: no\r\n", "bob@example.org", "ME@example.com", "ok"),
    ("Auto-Submitted: auto-replied\r\n", "bob@example.org", "me@example.com", "auto_submitted"),
    ("Auto-Submitted: auto-generated\r\n", "bob@example.org", "me@example.com",
     "auto_submitted"),
    ("Precedence: bulk\r\n", "bob@example.org", "me@example.com", "precedence"),
    ("Precedence: list\r\n", "bob@example.org", "me@example.com", "precedence"),
    ("Precedence: junk\r\n", "bob@example.org", "me@example.com", "precedence"),
    ("List-Id: <x.example.org>\r\n", "bob@example.org", "me@example.com", "list"),
    ("List-Unsubscribe: <mailto:u@x>\r\n", "bob@example.org", "me@example.com", "list"),
    ("", "bob@example.org", "other@example.com", "not_addressed"),
    ("Return-Path: <>\r\n", "bob@example.org", "me@example.com", "null_sender"),
    ("", "MAILER-DAEMON@example.org", "me@example.com", "noreply_sender"),
    ("", "no-reply@shop.example", "me@example.com", "noreply_sender"),
    ("", "noreply@shop.example", "me@example.com", "noreply_sender"),
    ("", "me@example.com", "me@example.com", "own_address"),
])
def test_should_reply(extra: str, frm: str, to: str, reason: str) -> None:
    d = autoreply.should_reply(h(extra, frm, to), OWN)
    assert d.reason == reason and d.reply == (reason == "ok")


def test_reply_headers() -> None:
    msg = autoreply.build_reply(from_=Address(addr_spec="me@example.com"), to="bob@example.org",
                                original_subject="Hi", original_message_id="<m1@example.org>",
                                original_references="<m0@example.org>", subject="",
                                body="Away until Monday.")
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Subject"] == "Re: Hi" and msg["In-Reply-To"] == "<m1@example.org>"
    assert msg["References"] == "<m0@example.org> <m1@example.org>"
    assert autoreply.reply_subject("RE: Hi", "") == "RE: Hi"
    assert autoreply.reply_subject("Hi", "Out of office") == "Out of office"


def test_arrival_is_the_topmost_received_time_a_sender_cannot_move_it_later() -> None:
    from datetime import UTC, datetime

    from flask_popaccounts.engine.autoreply import arrival_time

    fetched = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    headers = {"received": [
        "from mx.sender.example by mx.provider.example; Tue, 01 Jul 2025 09:00:00 +0000",
        # forged by the sender, below the provider's own line: a time in the future
        "from evil by evil; Fri, 01 Jan 2100 00:00:00 +0000",
    ], "date": ["Wed, 02 Dec 2026 11:00:00 +0000"]}
    assert arrival_time(headers, fetched) == datetime(2025, 7, 1, 9, 0, tzinfo=UTC)
    assert arrival_time({"received": ["no timestamp here"], "date": headers["date"]},
                        fetched) == datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
    assert arrival_time({}, fetched) == fetched
