"""Render the Mail Accounts page and the wizard, in English and in Arabic, to docs/.

    .venv/bin/python docs/make_screenshot.py [--out-dir DIR]

Writes accounts-en.png, accounts-ar.png (the Mail Accounts page) and wizard-en.png,
wizard-ar.png (the wizard's Gmail step). Builds the example app in a temporary folder
with four accounts in typical states (working, password refused, retrying, and one
downloading its first big fetch), serves it on 127.0.0.1 and photographs the pages with
Debian's Chromium through Playwright, the browser asking for each language with
Accept-Language (as a reader's browser does; nothing is forced in the config). No mail
server is needed: the states are written directly, as a fetch would.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def build_app(instance: Path) -> Any:
    from example_app import User, create_app, db
    from flask_popaccounts import db_session
    from flask_popaccounts.engine.types import DeletePolicy, Security
    from flask_popaccounts.services import accounts as svc
    from flask_popaccounts.services import progress

    app = create_app({"TESTING": True, "POPACCOUNTS_SCHEDULER_ENABLED": False,
                      "EXAMPLE_CREATE_DEMO_USERS": False, "SECRET_KEY": "screenshot",
                      "POPACCOUNTS_QUOTA_BYTES": 5_000_000_000},
                     instance_path=str(instance))
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    with app.test_request_context():
        user = User(username="alice")
        user.set_password("screenshot")
        db.session.add(user)
        db.session.commit()
        session = db_session()

        def make(email: str, name: str, host: str, default: bool = False) -> Any:
            return svc.create_account(app, session, str(user.id), svc.AccountInput(
                email=email, name=name, send_from=email, reply_to="", is_default=default,
                provider="other", pop_host=host, pop_port=995, pop_security=Security.SSL,
                pop_username=email, delete_policy=DeletePolicy.KEEP,
                password="x",  # noqa: S106 - never used to connect
                delete_after_days=0, fetch_interval_minutes=5))

        work = make("alice@work.example", "Work", "pop.work.example", default=True)
        work.status, work.last_success_at = "ok", now - timedelta(minutes=3)
        work.message_count, work.bytes_stored = 1842, 96_400_000
        isp = make("alice.b@oldisp.example", "Old ISP", "pop3.oldisp.example")
        isp.status, isp.last_error_code = "needs_password", "auth_failed"
        isp.last_success_at = now - timedelta(days=2, hours=3)
        isp.message_count, isp.bytes_stored = 311, 12_700_000
        club = make("secretary@chessclub.example", "Chess club", "mail.chessclub.example")
        club.status, club.last_error_code = "retrying", "connection_failed"
        club.next_due_at = now + timedelta(minutes=4)
        club.message_count, club.bytes_stored = 57, 2_100_000
        gmail = make("alice.example@gmail.com", "Gmail", "pop.gmail.com")
        gmail.message_count, gmail.bytes_stored = 420, 31_000_000
        session.commit()
        progress.start(app, gmail.id)
        progress.update_local(app, gmail.id, done=420, stored=420, total=3150)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out-dir", default=str(ROOT / "docs"))
    args = parser.parse_args()
    out = Path(args.out_dir)

    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    with tempfile.TemporaryDirectory() as tmp:
        app = build_app(Path(tmp) / "instance")
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.server_port}"
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                             headless=True, args=CHROMIUM_ARGS)
                for lang in ("en", "ar"):
                    context = browser.new_context(viewport={"width": 1200, "height": 860},
                                                  locale=lang)
                    page = context.new_page()
                    page.goto(url + "/login")
                    page.fill("#username", "alice")
                    page.fill("#password", "screenshot")
                    page.press("#password", "Enter")
                    page.goto(url + "/settings/mail-accounts/")
                    page.screenshot(path=str(out / f"accounts-{lang}.png"), full_page=True)
                    page.goto(url + "/settings/mail-accounts/add/pop3/gmail")
                    page.screenshot(path=str(out / f"wizard-{lang}.png"), full_page=True)
                    context.close()
                browser.close()
        finally:
            server.shutdown()
            thread.join(5)
            from flask_popaccounts import get_state

            with app.app_context():
                get_state(app).engine.dispose()
    print(f"wrote {out}/accounts-{{en,ar}}.png and {out}/wizard-{{en,ar}}.png")


if __name__ == "__main__":
    main()
