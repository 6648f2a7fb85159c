"""Deterministic, realistic test mail for the fetch benchmark.

Every message is built from a seeded RNG, so two runs with the same seed produce the
same mailbox byte for byte. Shapes, roughly as a real inbox looks:

* ``multipart/alternative`` (text/plain + text/html), quoted-printable bodies;
* about one in five wrapped in ``multipart/mixed`` with a small base64 attachment;
* about one in six with an Arabic subject and sender name, RFC 2047-encoded;
* varied ``Date`` headers (several time zones, over two years), a Received chain,
  Message-ID, and long HTML lines (real HTML mail often has lines over 2,000 bytes).

Bytes use CRLF line ends, so what POP3 hands out equals what was seeded.
"""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta, timezone
from email.header import Header
from email.utils import format_datetime

WORDS = (
    "account invoice meeting project report update schedule review budget client "
    "delivery contract proposal feedback summary agenda deadline release version "
    "server mailbox message please thanks regards attached following question "
    "tomorrow today week month quarter team office travel order shipment payment "
    "the and for with from this that will have been your our their about after"
).split()

ARABIC_SUBJECTS = (
    "اجتماع الفريق غدا",
    "تقرير المبيعات الشهري",
    "فاتورة رقم ٢٠٢٤",
    "تحديث المشروع والجدول الزمني",
    "مرحبا بكم في النشرة الأسبوعية",
    "طلب عرض سعر للمعدات",
)
ARABIC_NAMES = ("أحمد علي", "فاطمة حسن", "محمد السيد", "ليلى منصور")
LATIN_NAMES = ("Alice Martin", "Bob Chen", "Carla Rossi", "Dmitri Ivanov", "Eve O'Neil")
DOMAINS = ("example.com", "example.org", "mail.example.net", "corp.example")


def _sentence(rng: random.Random, n: int) -> str:
    s = " ".join(rng.choice(WORDS) for _ in range(n))
    return s[0].upper() + s[1:] + "."


def _paragraphs(rng: random.Random, target: int) -> list[str]:
    out: list[str] = []
    size = 0
    while size < target:
        p = " ".join(_sentence(rng, rng.randint(6, 18)) for _ in range(rng.randint(2, 6)))
        out.append(p)
        size += len(p) + 2
    return out


def _qp_lines(text: str) -> str:
    """Soft-wrap plain ASCII text the way quoted-printable does (76 columns)."""
    lines = []
    for para in text.split("\n"):
        while len(para) > 75:
            lines.append(para[:75] + "=")
            para = para[75:]
        lines.append(para)
    return "\r\n".join(lines)


def _addr(rng: random.Random, arabic: bool) -> str:
    if arabic:
        name = Header(rng.choice(ARABIC_NAMES), "utf-8").encode(linesep="\r\n")
    else:
        name = rng.choice(LATIN_NAMES)
        name = f'"{name}"' if "'" in name else name
    local = f"user{rng.randint(1, 999)}"
    return f"{name} <{local}@{rng.choice(DOMAINS)}>"


def make_message(rng: random.Random, index: int, target_size: int = 20_000) -> bytes:
    """One message of roughly ``target_size`` bytes (CRLF line ends)."""
    arabic = rng.random() < 1 / 6
    attach = rng.random() < 1 / 5
    base = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 2 * 365 * 86400))
    tz = timezone(timedelta(minutes=rng.choice((-480, -300, 0, 60, 120, 180, 330, 540))))
    date = format_datetime(base.astimezone(tz))
    if arabic:
        subject = Header(rng.choice(ARABIC_SUBJECTS), "utf-8").encode(maxlinelen=76, linesep="\r\n")
    else:
        subject = _sentence(rng, rng.randint(3, 9))[:-1]
    boundary_alt = f"==alt{index:06d}{rng.getrandbits(32):08x}"
    boundary_mix = f"==mix{index:06d}{rng.getrandbits(32):08x}"
    msgid = f"<{index}.{rng.getrandbits(48):012x}@{rng.choice(DOMAINS)}>"

    att_size = rng.randint(1500, 4000) if attach else 0
    text_budget = max(300, (target_size - 1300 - att_size * 4 // 3) // 2)
    paras = _paragraphs(rng, text_budget * 9 // 10)
    plain = _qp_lines("\n\n".join(paras))
    # HTML mail: one long line per paragraph, as many mailers write it.
    html_parts = ['<html><head><meta charset="utf-8"></head><body style="font-family:Arial">']
    for p in paras:
        html_parts.append(f'<p style="margin:0 0 12px 0;color:#222222">{p}</p>')
    html_parts.append("</body></html>")
    html = "\r\n".join(html_parts)

    received = (
        f"Received: from mx{rng.randint(1, 9)}.{rng.choice(DOMAINS)} "
        f"(mx.{rng.choice(DOMAINS)} [192.0.2.{rng.randint(1, 254)}])\r\n"
        f"\tby pop.example.net with ESMTPS id {rng.getrandbits(40):010x}\r\n"
        f"\tfor <bench@example.net>; {date}\r\n"
    )
    headers = (
        "Return-Path: <bounce@example.com>\r\n"
        + received
        + f"From: {_addr(rng, arabic)}\r\n"
        + "To: Bench User <bench@example.net>\r\n"
        + (f"Cc: {_addr(rng, False)}\r\n" if rng.random() < 0.3 else "")
        + f"Subject: {subject}\r\n"
        + f"Date: {date}\r\n"
        + f"Message-ID: {msgid}\r\n"
        + "MIME-Version: 1.0\r\n"
    )
    alt = (
        f"--{boundary_alt}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        f"{plain}\r\n"
        f"--{boundary_alt}\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        f"{html}\r\n"
        f"--{boundary_alt}--\r\n"
    )
    if attach:
        blob = base64.encodebytes(rng.randbytes(att_size)).decode().replace("\n", "\r\n")
        body = (
            f"Content-Type: multipart/mixed; boundary=\"{boundary_mix}\"\r\n\r\n"
            "This is a multi-part message in MIME format.\r\n"
            f"--{boundary_mix}\r\n"
            f"Content-Type: multipart/alternative; boundary=\"{boundary_alt}\"\r\n\r\n"
            f"{alt}"
            f"--{boundary_mix}\r\n"
            "Content-Type: application/pdf; name=\"scan.pdf\"\r\n"
            "Content-Disposition: attachment; filename=\"scan.pdf\"\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n"
            f"{blob}"
            f"--{boundary_mix}--\r\n"
        )
    else:
        body = f"Content-Type: multipart/alternative; boundary=\"{boundary_alt}\"\r\n\r\n{alt}"
    return (headers + body).encode("utf-8")


def make_mailbox(count: int, seed: int = 20240601, target_size: int = 20_000) -> list[bytes]:
    """``count`` messages, the same for the same seed."""
    rng = random.Random(seed)
    return [make_message(rng, i, target_size) for i in range(count)]


def make_small(count: int, seed: int = 7) -> list[bytes]:
    """Small (~1 KB) messages for the large-mailbox poll test, where only UIDLs matter."""
    rng = random.Random(seed)
    return [make_message(rng, i, target_size=1) for i in range(count)]


def make_large(size: int, seed: int = 50) -> bytes:
    """One message of about ``size`` bytes: a short text part and a big base64 attachment."""
    rng = random.Random(seed)
    head = (
        b"From: Big Sender <big@example.com>\r\n"
        b"To: Bench User <bench@example.net>\r\n"
        b"Subject: =?utf-8?b?2YXZhNmBINmD2KjZitix?= (large file)\r\n"
        b"Date: Mon, 03 Jun 2024 10:00:00 +0200\r\n"
        b"Message-ID: <large.1@example.com>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="==big=="\r\n\r\n'
        b"--==big==\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe file.\r\n"
        b"--==big==\r\n"
        b'Content-Type: application/octet-stream; name="video.mp4"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
    )
    tail = b"--==big==--\r\n"
    raw_len = (size - len(head) - len(tail)) * 57 // 78
    chunks = []
    block = 57 * 1000
    done = 0
    while done < raw_len:
        n = min(block, raw_len - done)
        chunks.append(base64.encodebytes(rng.randbytes(n)).replace(b"\n", b"\r\n"))
        done += n
    return head + b"".join(chunks) + tail
