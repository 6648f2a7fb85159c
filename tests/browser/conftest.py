"""Headless Chromium (Debian's, through Playwright) against the example webmail served
by a werkzeug server thread on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from tests.support.dovecot import Dovecot
from tests.web.conftest import make_example

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


class LiveServer:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(10)


@pytest.fixture
def live_app(tmp_path: Path, dovecot: Dovecot) -> Iterator[LiveServer]:
    app = make_example(
        tmp_path,
        WTF_CSRF_ENABLED=True,
        POPACCOUNTS_ALLOW_PRIVATE_HOSTS=True,
        POPACCOUNTS_CA_FILE=dovecot.ca_file,
        POPACCOUNTS_ALLOWED_POP3_PORTS=(110, 995, dovecot.pop3_port, dovecot.pop3s_port),
        POPACCOUNTS_CONNECT_TIMEOUT=5,
        POPACCOUNTS_READ_TIMEOUT=20,
    )
    with LiveServer(app) as server:
        yield server


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright import sync_api
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("Debian's chromium is missing: run scripts/install-system-deps.sh")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                     args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()


@pytest.fixture
def mail_live(tmp_path: Path, dovecot: Dovecot, smtpd: Any) -> Iterator[LiveServer]:
    """The example webmail wired to the test Dovecot and aiosmtpd servers (incoming and
    outgoing ports allowed, the aiosmtpd relay as the system mailer). The test module
    brings the ``smtpd`` fixture (tests.sending.conftest)."""
    app = make_example(
        tmp_path,
        WTF_CSRF_ENABLED=True,
        POPACCOUNTS_ALLOW_PRIVATE_HOSTS=True,
        POPACCOUNTS_CA_FILE=dovecot.ca_file,
        POPACCOUNTS_ALLOWED_POP3_PORTS=(110, 995, dovecot.pop3_port, dovecot.pop3s_port),
        POPACCOUNTS_ALLOWED_SMTP_PORTS=(465, 587, smtpd.submission_port),
        POPACCOUNTS_SYSTEM_SMTP_HOST="127.0.0.1",
        POPACCOUNTS_SYSTEM_SMTP_PORT=smtpd.relay_port,
        POPACCOUNTS_SYSTEM_SMTP_SECURITY="plain",
        POPACCOUNTS_SYSTEM_SMTP_FROM="no-reply@webmail.example",
        POPACCOUNTS_CONNECT_TIMEOUT=5,
        POPACCOUNTS_READ_TIMEOUT=20,
    )
    with LiveServer(app) as server:
        yield server
