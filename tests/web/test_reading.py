"""services.reading: decoded headers, text parts, sanitised HTML, attachments."""

from __future__ import annotations

from flask_popaccounts.services.reading import render_raw, sanitize_html

MIXED = (
    b"From: =?utf-8?b?w4lsb2lzZQ==?= <eloise@example.com>\r\n"
    b"To: me@example.com\r\n"
    b"Subject: =?utf-8?q?R=C3=A9union_demain?=\r\n"
    b"Date: Tue, 01 Mar 2022 10:00:00 +0100\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b"--b1\r\n"
    b'Content-Type: multipart/alternative; boundary="b2"\r\n\r\n'
    b"--b2\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 =E0 10h\r\n"
    b"--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b'<p style="background:url(https://t.example/bg)" onclick="x()">Caf\xc3\xa9</p>'
    b'<img src="https://tracker.example/p.gif" alt="pixel">'
    b'<img src="cid:logo@x" alt="logo"><img src="data:image/png;base64,iVBORw0KGgo=">'
    b'<a href="https://example.com/agenda">agenda</a><a href="javascript:alert(1)">x</a>'
    b"<script>alert(1)</script><style>@import url(https://t.example/a.css)</style>"
    b'<iframe src="https://evil.example"></iframe><form action="https://e"><input></form>\r\n'
    b"--b2--\r\n"
    b"--b1\r\nContent-Type: application/pdf\r\n"
    b'Content-Disposition: attachment; filename="agenda.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n"
    b"--b1--\r\n"
)


def test_headers_text_html_attachments() -> None:
    msg = render_raw(MIXED)
    assert msg.subject == "Réunion demain"
    assert msg.from_ == "Éloise <eloise@example.com>"
    assert msg.date is not None and msg.date.utcoffset() is not None
    assert msg.text is not None and "Café à 10h" in msg.text
    assert msg.html is not None
    html = msg.html
    for bad in ("tracker.example", "t.example", "javascript:", "<script", "onclick", "style=",
                "<iframe", "<form", "cid:", "@import"):
        assert bad not in html, bad
    assert 'href="https://example.com/agenda"' in html
    assert 'rel="noopener noreferrer"' in html
    assert "data:image/png" in html
    assert msg.remote_content_blocked
    assert [(a.filename, a.content_type, a.size) for a in msg.attachments] == [
        ("agenda.pdf", "application/pdf", 9)]


def test_broken_mail_never_raises() -> None:
    raw = (b"Subject: =?x-unknown?q?abc?=\r\nDate: not a date\r\nFrom: <<<\r\n"
           b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\nhello \xff\r\n")
    msg = render_raw(raw)
    assert msg.date is None
    assert msg.text is not None and "hello" in msg.text
    assert render_raw(b"").text is not None or render_raw(b"").text is None


def test_header_control_chars_are_neutralised() -> None:
    msg = render_raw(b"Subject: a\x1b[31mred\r\n\r\nbody\r\n")
    assert "\x1b" not in msg.subject


def test_svg_data_images_are_blocked() -> None:
    clean, blocked = sanitize_html('<img src="data:image/svg+xml;base64,PHN2Zz4=">')
    assert "svg" not in clean and blocked


def test_no_remote_content_flag_when_clean() -> None:
    clean, blocked = sanitize_html('<p>Hello <b>there</b></p>')
    assert clean == "<p>Hello <b>there</b></p>" and not blocked
