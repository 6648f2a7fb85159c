"""Test messages: small, realistic, CRLF line ends, each with a unique Message-ID."""

from __future__ import annotations

import random
import uuid
from email.header import Header

ARABIC_SUBJECT = "مرحبا بالعالم: تقرير الحساب"


def make_message(
    i: int = 0,
    *,
    subject: str | None = None,
    body_size: int = 200,
    date: str | None = "Tue, 01 Jul 2025 10:52:37 +0200",
    extra_headers: str = "",
    rng: random.Random | None = None,
) -> bytes:
    """One RFC 5322 message with CRLF line ends; lines starting with '.' to test stuffing."""
    rng = rng or random.Random(i)
    subj = subject if subject is not None else f"Test message {i}"
    try:
        subj.encode("ascii")
        subj_h = subj
    except UnicodeEncodeError:
        subj_h = Header(subj, "utf-8").encode().replace("\n", "\r\n")
    lines = [
        f"Message-ID: <{uuid.UUID(int=rng.getrandbits(128))}.{i}@test.example>",
        "From: Sender <sender@example.org>",
        "To: alice@example.net",
        f"Subject: {subj_h}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ]
    if date is not None:
        lines.append(f"Date: {date}")
    if extra_headers:
        lines.extend(extra_headers.strip("\r\n").split("\r\n"))
    body = [f"Message number {i}.", ".a line that starts with a dot", "."]
    n = 0
    while n < body_size:
        line = "".join(rng.choice("abcdefghij .") for _ in range(rng.randint(0, 90)))
        body.append(line)
        n += len(line) + 2
    return ("\r\n".join(lines) + "\r\n\r\n" + "\r\n".join(body) + "\r\n").encode("utf-8")


def nested(depth: int, *, head: bytes = b"") -> bytes:
    """A message whose multiparts nest ``depth`` levels deep, a text part at the bottom
    (``head``: fields put first, e.g. a Received: line)."""
    head += (b"From: Deep <deep@example.org>\r\nTo: me@example.com\r\nSubject: Deep\r\n"
             b"Date: Tue, 01 Jul 2025 10:00:00 +0000\r\nMessage-ID: <deep@example.org>\r\n"
             b"MIME-Version: 1.0\r\n")
    opening = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n'
                       % (i, i) for i in range(depth))
    leaf = b"Content-Type: text/plain\r\n\r\nAt the bottom of the well.\r\n"
    closing = b"".join(b"--b%d--\r\n" % i for i in reversed(range(depth)))
    return head + opening + leaf + closing
