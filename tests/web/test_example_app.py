"""The example webmail's own parts: first run, demo users, secrets in instance/,
``python -m example_app``, and the message view's sanitised HTML."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.support.dovecot import Dovecot
from tests.support.waiting import wait_until

from .conftest import PREFIX, account_form, login

ROOT = Path(__file__).resolve().parents[2]


def test_first_run_creates_instance_secrets_and_demo_users(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from example_app import create_app
    from flask_popaccounts import get_state

    inst = tmp_path / "instance"
    app = create_app({"TESTING": True, "POPACCOUNTS_SCHEDULER_ENABLED": False},
                     instance_path=str(inst))
    out = capsys.readouterr().out
    passwords = dict(re.findall(r"^\s+(alice|bob) / (\S+)$", out, re.M))
    assert set(passwords) == {"alice", "bob"}
    for name in ("secret_key", "popaccounts_key", "example.db"):
        assert (inst / name).exists(), name
    assert (inst / "popaccounts_key").stat().st_mode & 0o077 == 0
    client = app.test_client()
    # login with the printed password (CSRF is on in the example app: take the token)
    page = client.get("/login").text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    resp = client.post("/login", data={"username": "alice", "password": passwords["alice"],
                                       "csrf_token": token})
    assert resp.status_code == 302
    with app.app_context():
        get_state(app).engine.dispose()

    # second start: same keys, no new users
    key = (inst / "popaccounts_key").read_text()
    app2 = create_app({"TESTING": True, "POPACCOUNTS_SCHEDULER_ENABLED": False},
                      instance_path=str(inst))
    assert "demo users" not in capsys.readouterr().out
    assert (inst / "popaccounts_key").read_text() == key
    assert app2.config["POPACCOUNTS_SECRET_KEYS"] == [key.strip()]
    with app2.app_context():
        get_state(app2).engine.dispose()


def test_create_demo_users_cli(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["create-demo-users"])
    assert result.exit_code == 0, result.output
    assert re.search(r"^alice / \S+$", result.output, re.M)
    assert re.search(r"^bob / \S+$", result.output, re.M)


def test_wrong_login_refused(app: Flask) -> None:
    resp = app.test_client().post("/login", data={"username": "alice", "password": "nope"})
    assert resp.status_code == 401 and "Wrong username or password" in resp.text


def test_every_page_names_an_icon_that_exists(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/login")
    assert 'rel="icon" type="image/svg+xml" href="/static/favicon.svg"' in page.text
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"


def test_mailbox_without_accounts(alice: Any) -> None:
    resp = alice.get("/mail/")
    assert resp.status_code == 200 and "Add a POP3 account" in resp.text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_python_m_example_app_serves(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "PORT": str(port), "FLASK_POPACCOUNTS_SCHEDULER_ENABLED": "false",
           "PYTHONPATH": str(ROOT)}
    # a copy of the package next to a fresh instance/ folder so the repo's stays untouched
    work = tmp_path / "run"
    work.mkdir()
    (work / "example_app").symlink_to(ROOT / "example_app")
    (work / "templates").symlink_to(ROOT / "templates")
    env["PYTHONPATH"] = f"{work}{os.pathsep}{ROOT}"
    proc = subprocess.Popen([sys.executable, "-m", "example_app"], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def login_page() -> bytes | None:
        assert proc.poll() is None, "python -m example_app exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as r:
                return bytes(r.read()) if r.status == 200 else None
        except OSError:  # not listening yet
            return None

    try:
        assert b"Sign in" in wait_until(login_page, 20, "the example app to serve /login")
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl+C
        out = proc.communicate(timeout=20)[0].decode()
    assert "alice / " in out
    # make demo's start-up lines: where to go, how to sign in, the demo mailbox
    assert f"Example webmail: http://127.0.0.1:{port}/" in out
    assert "Sign in as alice or bob" in out
    assert "Demo mailbox on this machine: demo@mail.demo.example, 300 messages" in out
    assert re.search(r"POP3 127\.0\.0\.1:\d+ \(STARTTLS\), SMTP 127\.0\.0\.1:\d+", out)
    assert "Traceback" not in out and proc.returncode == 0, out  # stopped cleanly


HTML_MAIL = (
    b"From: News <news@example.org>\r\nTo: me@example.com\r\nSubject: Newsletter\r\n"
    b"Date: Tue, 01 Jul 2025 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n\r\n"
    b'<p>Hi<img src="https://tracker.example/open.gif"></p><script>alert(1)</script>'
    b'<a href="https://example.org/read">Read more</a>\r\n'
)


def test_message_view_sanitises_html(make_app: Any, dovecot: Dovecot,
                                     new_user: tuple[str, str]) -> None:
    from flask_popaccounts.services.fetching import wait_for_check

    user, password = new_user
    dovecot.deliver(user, HTML_MAIL)
    app = make_app(POPACCOUNTS_ALLOW_PRIVATE_HOSTS=True, POPACCOUNTS_CA_FILE=dovecot.ca_file,
                   POPACCOUNTS_ALLOWED_POP3_PORTS=(995, dovecot.pop3s_port))
    client = login(app.test_client())
    resp = client.post(f"{PREFIX}/add/pop3/other", data=account_form(
        email=f"{user}@example.com", pop_host="127.0.0.1", pop_port=str(dovecot.pop3s_port),
        pop_username=user, password=password))
    account_id = int(resp.location.split("/")[-2])
    client.post(f"{PREFIX}/{account_id}/check")
    assert wait_for_check(app, account_id, timeout=30)
    box = client.get(f"/mail/{account_id}/").text
    link = re.search(rf'href="(/mail/{account_id}/\d+)"', box).group(1)  # type: ignore[union-attr]
    resp = client.get(link)
    page = resp.text
    assert "Remote images were blocked" in page
    assert "tracker.example" not in page and "<script>alert" not in page
    assert "Read more" not in page  # the body is not part of the page: it is framed
    csp = resp.headers["Content-Security-Policy"]
    assert csp.startswith("default-src 'self'; script-src 'self'")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    frame = re.search(r'<iframe [^>]*sandbox="([^"]*)"[^>]*src="([^"]+)"', page)
    assert frame is not None and "allow-scripts" not in frame.group(1)
    body = client.get(frame.group(2))
    assert 'href="https://example.org/read"' in body.text and "noopener noreferrer" in body.text
    assert "tracker.example" not in body.text and "<script>alert" not in body.text
    csp = body.headers["Content-Security-Policy"]
    assert csp.startswith("default-src 'none'; img-src data:;") and "sandbox " in csp
    assert "allow-scripts" not in csp
    assert client.get(f"/mail/{account_id}/999999").status_code == 404
