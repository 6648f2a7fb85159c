"""Header metadata: RFC 2047 (Arabic), raw 8-bit, broken input; never raises."""

from __future__ import annotations

import base64
import io
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from flask_popaccounts.engine.parse import (
    HEADER_LIMIT,
    all_headers,
    display_text,
    header_section,
    parse_meta,
    read_header_section,
)


def _b64(text: str, charset: str) -> str:
    return base64.b64encode(text.encode(charset)).decode()


FETCHED = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def meta(headers: str | bytes):  # type: ignore[no-untyped-def]
    raw = headers.encode() if isinstance(headers, str) else headers
    return parse_meta(raw, len(raw), FETCHED)


@pytest.mark.parametrize(("header", "expected"), [
    ("=?UTF-8?B?2YXYsdit2KjYpyDYqNin2YTYudin2YTZhQ==?=", "مرحبا بالعالم"),
    ("=?utf-8?q?=D9=85=D8=B1=D8=AD=D8=A8=D8=A7?=", "مرحبا"),
    ("=?windows-1256?B?" + _b64("السلام", "cp1256") + "?=", "السلام"),
    ("=?ISO-8859-6?B?" + _b64("السلام", "iso-8859-6") + "?=", "السلام"),
    ("=?UTF-8?B?2YXYsdit2KjYpw==?=\r\n =?UTF-8?B?INio2YM=?=", "مرحبا بك"),
    ("Re: =?UTF-8?B?2LTZg9ix2Kc=?= (2)", "Re: شكرا (2)"),
])
def test_rfc2047_arabic(header: str, expected: str) -> None:
    assert meta(f"Subject: {header}\r\n\r\n").subject == expected


def test_raw_utf8_headers() -> None:
    m = meta("Subject: تقرير شهري\r\nFrom: أحمد <ahmed@example.org>\r\nTo: a@x, b@y\r\n"
             "Cc: c@z\r\n\r\n")
    assert m.subject == "تقرير شهري"
    assert m.from_addr == "أحمد <ahmed@example.org>"
    assert m.to_addrs == "a@x, b@y, c@z"


def test_raw_latin1_bytes_do_not_break() -> None:
    m = meta(b"Subject: caf\xe9 cr\xe8me\r\n\r\n")
    assert m.subject == "café crème"


def test_malformed_encoded_words_degrade() -> None:
    m = meta("Subject: =?UTF-8?B?###?= ok =?no-such-charset?Q?abc?= =?UTF-8?Q?caf=C3=A9?=\r\n\r\n")
    assert "ok" in m.subject and "café" in m.subject


def test_date_header_to_utc() -> None:
    m = meta("Date: Tue, 01 Jul 2025 10:52:37 +0200\r\n\r\n")
    assert m.sent_at == datetime(2025, 7, 1, 8, 52, 37, tzinfo=UTC)
    assert m.sent_at_source == "date"
    naive = meta("Date: Tue, 01 Jul 2025 10:52:37 -0000\r\n\r\n")
    assert naive.sent_at.tzinfo is not None
    assert naive.sent_at == datetime(2025, 7, 1, 10, 52, 37, tzinfo=UTC)


def test_received_fallback_uses_topmost() -> None:
    m = meta("Received: from a by b with ESMTP id 1; Mon, 2 Jun 2025 08:00:00 +0300\r\n"
             "Received: from c by d; Sun, 1 Jun 2025 08:00:00 +0000\r\nDate: nonsense\r\n\r\n")
    assert m.sent_at_source == "received"
    assert m.sent_at == datetime(2025, 6, 2, 5, 0, tzinfo=UTC)
    assert "Date: unparseable" in m.defects


def test_fetch_time_fallback_and_aware() -> None:
    m = parse_meta(b"Subject: x\r\n\r\n", 10, datetime(2026, 3, 1, 12, 0,
                                                      tzinfo=timezone(timedelta(hours=3))))
    assert m.sent_at == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    assert m.sent_at_source == "fetched"


def test_message_id_and_control_characters_cleaned() -> None:
    m = meta("Message-ID: <abc@x>\r\nSubject: a\x1b[31m red \x00 b\r\n\r\n")
    assert m.message_id == "<abc@x>"
    assert "\x1b" not in m.subject and "\x00" not in m.subject


def test_random_garbage_never_raises() -> None:
    rng = random.Random(7)
    pieces = [b"Subject: ", b"From: ", b"Date: ", b"Received: ", b"=?", b"?B?", b"?Q?", b"?=",
              b"\r\n", b"\n", b" ", b"\xff", b"\xd9\x85", b";", b":", b"<", b">", b"\"", b"(",
              b"utf-8", b"=C3", b"\x00", b"\t"]
    for _ in range(400):
        blob = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 60)))
        m = parse_meta(blob, len(blob), FETCHED)
        assert m.sent_at.tzinfo is not None


def test_read_header_section_is_bounded_and_rewinds() -> None:
    spool = io.BytesIO(b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore")
    assert read_header_section(spool) == b"A: 1\r\nB: 2\r\n\r\n"
    assert spool.tell() == 0
    huge = io.BytesIO(b"X: " + b"y" * 1_000_000)  # one field past the limit, not used
    assert read_header_section(huge, limit=1000) == b""
    used = io.BytesIO(b"Subject: " + b"y" * 1_000_000)  # used: kept, cut, still one field
    assert read_header_section(used, limit=1000) == b"Subject: " + b"y" * (8 * 1024 - 9) \
        + b"\r\n"
    lf = io.BytesIO(b"A: 1\n\nbody")
    assert read_header_section(lf) == b"A: 1\n\n"


def test_header_splitting_edge_cases() -> None:
    m = meta("From somebody Mon Jan  1 00:00:00 2025\r\nSubject : folded\r\n\tacross lines\r\n"
             "X-Other: =?UTF-8?B?2YXYsdit2KjYpw==?=\r\nnot a header line\r\n"
             "To: =?UTF-8?B?2KPYrdmF2K8=?= <ahmed@example.org>\r\n\r\nSubject: in the body\r\n")
    assert m.subject == "folded across lines"
    assert m.to_addrs == "أحمد <ahmed@example.org>"
    assert m.defects == ["malformed header line"]


@pytest.mark.parametrize(("raw", "expected"), [
    (b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore", b"A: 1\r\nB: 2\r\n\r\n"),
    (b"A: 1\n\nbody\n\nmore", b"A: 1\n\n"),
    (b"A: 1\nB: 2\r\n\r\nbody", b"A: 1\nB: 2\r\n\r\n"),  # mixed line ends
    (b"A: 1\r\n\nbody", b"A: 1\r\n\n"),
    (b"A: 1\r\nB: 2", b"A: 1\r\nB: 2"),  # no body at all: everything is header
    (b"", b""),
])
def test_the_header_section_of_a_message_in_memory(raw: bytes, expected: bytes) -> None:
    assert header_section(raw) == expected
    assert read_header_section(io.BytesIO(raw)) == expected  # the same cut as from a spool


def test_the_header_section_in_memory_is_bounded_like_the_spools() -> None:
    raw = b"A: 1\r\nX: " + b"y" * 1_000_000 + b"\r\n\r\nbody"
    assert header_section(raw, limit=1000) == read_header_section(io.BytesIO(raw), limit=1000)
    assert header_section(raw, limit=1000) == b"A: 1\r\n\r\n"
    assert header_section(raw, limit=1000).body_offset == len(raw) - 4


def big_header_message(filler: int = 400 * 1024) -> bytes:
    """A 400 KB block of trace fields first; what a reader needs comes after it."""
    line = b"X-Trace: " + b"t" * 90 + b"\r\n"
    return (b"Received: from a.example by b.example; Tue, 01 Jul 2025 10:00:00 +0000\r\n"
            + line * (filler // len(line))
            + b"From: Late Sender <late@example.org>\r\nTo: me@example.com\r\n"
            + b"Subject: =?utf-8?q?Found_after_400_KB?=\r\n"
            + b"Date: Wed, 02 Jul 2025 11:00:00 +0000\r\nMessage-ID: <late@example.org>\r\n"
            + b"X-Ignored: " + b"z" * 100_000 + b"\r\n"
            + b"Content-Type: text/plain; charset=utf-8\r\n\r\nThe body.\r\n")


def test_fields_after_a_header_block_of_several_hundred_kb_are_parsed() -> None:
    raw = big_header_message()
    spool = io.BytesIO(raw)
    header = read_header_section(spool)
    assert spool.tell() == 0 and spool.getvalue() == raw  # the message itself is unchanged
    assert header.body_offset == raw.index(b"The body.")
    assert len(header) < HEADER_LIMIT + 64 * 1024  # bounded: only used fields kept past it
    assert b"X-Ignored" not in header and header.endswith(b"\r\n\r\n")
    m = parse_meta(header, len(raw), FETCHED)
    assert m.subject == "Found after 400 KB"
    assert m.from_addr == "Late Sender <late@example.org>"
    assert m.message_id == "<late@example.org>"
    assert m.sent_at == datetime(2025, 7, 2, 11, 0, tzinfo=UTC) and m.sent_at_source == "date"


def test_two_subject_fields_the_first_is_the_subject() -> None:
    m = meta("Subject: First\r\nFrom: a@example.org\r\nSubject: Second\r\n"
             "From: b@example.org\r\n\r\n")
    assert m.subject == "First" and m.from_addr == "a@example.org"
    assert "Subject: 2 fields, the first is used" in m.defects


def test_bidi_controls_are_dropped_from_stored_fields() -> None:
    m = meta("Subject: invoice \u202egnp.exe\r\n"
             "From: =?utf-8?b?" + base64.b64encode(
                 "\u2067Bank\u2069 \u200f".encode()).decode() + "?= <x@example.org>\r\n\r\n")
    assert m.subject == "invoice gnp.exe"
    assert m.from_addr == "Bank <x@example.org>"
    arabic = "\u0645\u0631\u062d\u0628\u0627"  # marhaba: letters stay, marks go
    assert display_text(f"\u061c{arabic}\u200e a\u202ab") == f"{arabic} ab"


def test_a_blank_line_across_two_spool_reads_is_found() -> None:
    head = b"X: " + b"y" * (64 * 1024 - 5) + b"\r\n"  # the first read ends inside the CRLFCRLF
    assert read_header_section(io.BytesIO(head + b"\r\nbody")) == head + b"\r\n"


def test_all_headers_gives_every_field_unfolded_and_decoded() -> None:
    headers = all_headers(
        b"From somebody Mon Jan  1 00:00:00 2025\r\nSubject : folded\r\n\tacross   lines\r\n"
        b"X-Spam-Flag: YES\r\nList-Id: <news.example.org>\r\nnot a header line\r\n"
        b"Received: one\r\nReceived: two\r\n"
        b"To: =?UTF-8?B?2KPYrdmF2K8=?= <ahmed@example.org>\r\n\r\nX-In-Body: no\r\n")
    assert headers == {
        "subject": ["folded across lines"],
        "x-spam-flag": ["YES"],
        "list-id": ["<news.example.org>"],
        "received": ["one", "two"],
        "to": ["أحمد <ahmed@example.org>"],
    }
