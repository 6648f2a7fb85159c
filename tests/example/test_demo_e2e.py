"""``make demo`` end to end: the webmail and the demo mailbox, as a newcomer uses them.

The app is started as ``python -m example_app`` starts it (:func:`example_app.start_demo`:
the demo mailbox, then ``create_app`` with the scheduler on and CSRF on; only the
ports are free ones and DMARC look-ups go to a local DNS server). Through the pages
(Flask's test client, each form filled from the page as a browser would), the user adds
the wizard's "Demo mailbox (this machine)", the scheduler's first sync brings in all
300 sample messages, listed by sent date; "Send mail as" through the site's mail
server emails a code that the next check brings into the same mailbox, and the code
verifies the address. Beside it, the narrow allowance: only the demo's own (address,
port) pairs are trusted; another port or another private address is refused.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from example_app import demo_mailbox, start_demo
from flask_popaccounts import get_state
from tests.support.dnsserver import DNSServer
from tests.support.trap import Trap
from tests.support.waiting import wait_until

PREFIX = "/settings/mail-accounts"


class _Forms(HTMLParser):
    """The fields a browser would submit for each ``<form>`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "fields": {}})
        elif not self.forms:
            return
        fields = self.forms[-1]["fields"] if self.forms else {}
        if tag == "input" and a.get("name"):
            kind = a.get("type", "text")
            if kind in ("radio", "checkbox"):
                if "checked" in a:
                    fields[a["name"]] = a.get("value", "y")
            elif kind not in ("submit", "button"):
                fields[a["name"]] = a.get("value", "")
        elif tag == "select":
            self._select = a.get("name")
        elif tag == "option" and self._select and "selected" in a:
            fields[self._select] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def forms_of(html: str) -> list[dict[str, Any]]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def page_form(html: str, url: str, action: str | None = None) -> dict[str, Any]:
    """The form of a page that posts to ``action`` (default: to the page itself)."""
    want = {action} if action else {"", url}
    found = [f for f in forms_of(html) if f["action"] in want]
    assert found, f"no form posting to {want} on {url}"
    return found[0]


def post_form(client: FlaskClient, url: str, action: str | None = None, **changes: str
              ) -> Any:
    """GET ``url``, take its form (posting to ``action``, default the page itself) as
    the page filled it, change some fields, submit it (with the page's CSRF token)."""
    page = client.get(url)
    assert page.status_code == 200, page.text
    form = page_form(page.text, url, action)
    assert "csrf_token" in form["fields"]
    return client.post(form["action"] or url, data={**form["fields"], **changes})


@pytest.fixture
def dns() -> Iterator[DNSServer]:
    server = DNSServer()  # every name NXDOMAIN: nothing leaves the machine
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def demo_app(tmp_path: Path, dns: DNSServer, capsys: pytest.CaptureFixture[str]
             ) -> Iterator[tuple[Flask, demo_mailbox.DemoMailbox, dict[str, str]]]:
    app, demo = start_demo(str(tmp_path / "instance"), pop3_port=0, smtp_port=0,
                           config={"POPACCOUNTS_DNS_NAMESERVERS": [dns.nameserver]})
    users = dict(re.findall(r"^\s+(alice|bob) / (\S+)$", capsys.readouterr().out, re.M))
    try:
        yield app, demo, users
    finally:
        state = get_state(app)
        if state.scheduler is not None:
            state.scheduler.shutdown(wait=True)
        demo.stop()
        with app.app_context():
            state.engine.dispose()
            from example_app import db

            db.engine.dispose()


def signed_in(app: Flask, users: dict[str, str], name: str = "alice") -> FlaskClient:
    client = app.test_client()
    resp = post_form(client, "/login", username=name, password=users[name])
    assert resp.status_code == 302, resp.text
    return client


def _count(app: Flask, account_id: int) -> int:
    from flask_popaccounts.storage.mailbox import count_messages

    with get_state(app).session_factory() as session:
        return count_messages(session, account_id)


def test_make_demo_shows_the_whole_job(demo_app: tuple[Flask, Any, dict[str, str]]) -> None:
    app, demo, users = demo_app
    assert app.config["POPACCOUNTS_ALLOW_PRIVATE_HOSTS"] is False  # the narrow allowance only
    assert get_state(app).scheduler is not None and app.config["WTF_CSRF_ENABLED"] is not False
    client = signed_in(app, users)

    # Step 2 offers the demo mailbox; its form is filled in and asks for no password.
    providers = client.get(f"{PREFIX}/add/pop3").text
    assert "Demo mailbox (this machine)" in providers
    assert f'href="{PREFIX}/add/pop3/demo"' in providers
    page = client.get(f"{PREFIX}/add/pop3/demo").text
    fields = page_form(page, f"{PREFIX}/add/pop3/demo")["fields"]
    assert fields["email"] == demo.address and fields["pop_host"] == "127.0.0.1"
    assert fields["pop_port"] == str(demo.pop3_port) and fields["pop_security"] == "starttls"
    assert "password" not in fields and demo.mailbox.password not in page

    started = time.monotonic()
    resp = post_form(client, f"{PREFIX}/add/pop3/demo")  # "Test and save", nothing typed
    assert resp.status_code == 302, resp.text
    account_id = int(re.search(r"/(\d+)/connected$", resp.location).group(1))  # type: ignore[union-attr]

    # The first sync starts at once (the scheduler is poked), not at its next tick.
    wait_until(lambda: _count(app, account_id) == demo_mailbox.DEMO_MESSAGES, 60,
               "the first sync of the demo mailbox")
    first_sync = time.monotonic() - started
    assert first_sync < 30, f"first sync took {first_sync:.1f} s"

    from flask_popaccounts.storage import mailbox as store

    with get_state(app).session_factory() as session:
        listed = store.list_messages(session, account_id, limit=1000)
        assert [m.uidl for m in sorted(listed, key=lambda m: m.uidl or "")] == [
            f"demo-{i:06d}" for i in range(1, demo_mailbox.DEMO_MESSAGES + 1)]
        sent_dates = {uidl: parsedate_to_datetime(
            message_from_bytes(raw, policy=policy.default)["Date"])
            for uidl, raw in demo.mailbox.snapshot()}
        assert [m.sent_at for m in listed] == sorted(sent_dates.values(), reverse=True)
        assert not any(m.is_read for m in listed)
    box = client.get(f"/mail/{account_id}/").text
    assert box.index(f"({demo_mailbox.DEMO_MESSAGES})") < box.index(
        f"({demo_mailbox.DEMO_MESSAGES - 1})")  # the newest sample first

    # Send mail as: through this site's mail server, confirmed by a code emailed to the
    # demo address, which lands in the demo mailbox.
    resp = post_form(client, f"{PREFIX}/{account_id}/outgoing", mode="system")
    assert resp.status_code == 302 and resp.location.endswith("/send-as"), resp.text
    assert len(demo.mailbox.snapshot()) == demo_mailbox.DEMO_MESSAGES + 1
    resp = post_form(client, f"{PREFIX}/{account_id}/connected",  # its "Check now"
                     f"{PREFIX}/{account_id}/check")
    assert resp.status_code == 302, resp.text
    wait_until(lambda: _count(app, account_id) == demo_mailbox.DEMO_MESSAGES + 1, 30,
               "the confirmation email to be fetched")
    with get_state(app).session_factory() as session:
        newest = store.list_messages(session, account_id, limit=1)[0]
        assert newest.subject.startswith("Your confirmation code")
        code = re.search(rb"confirmation code is: (\w+)", store.read_raw(session, newest.id))
    assert code is not None
    send_as = client.get(f"{PREFIX}/send-as").text
    verify = re.search(rf'href="({PREFIX}/send-as/\d+/verify)"', send_as)
    assert verify is not None and demo.address in send_as
    resp = post_form(client, verify.group(1), code=code.group(1).decode())
    assert resp.status_code == 302, resp.text
    assert 'data-state="verified"' in client.get(f"{PREFIX}/send-as").text


def test_only_the_demo_servers_are_trusted(demo_app: tuple[Flask, Any, dict[str, str]]) -> None:
    app, demo, users = demo_app
    client = signed_in(app, users)
    with Trap() as trap:
        # Another port on the same address (allowed as a port, so only the address
        # decides), and another loopback address on the demo's own port.
        app.config["POPACCOUNTS_ALLOWED_POP3_PORTS"] = (110, 995, trap.port)
        for host, port in (("127.0.0.1", trap.port), ("127.0.0.2", demo.pop3_port),
                           ("127.0.0.1", 995)):
            resp = post_form(client, f"{PREFIX}/add/pop3/other", email="me@example.org",
                             name="Elsewhere", pop_host=host, pop_port=str(port),
                             pop_security="starttls", pop_username="demo",
                             password=demo.mailbox.password)
            assert resp.status_code == 422, (host, port, resp.text)
            assert "This server address is not allowed" in resp.text, (host, port)
        trap.assert_untouched()
    # The demo pair itself, typed by hand under "Other", is the demo server.
    resp = post_form(client, f"{PREFIX}/add/pop3/other", email="me@example.org",
                     name="By hand", pop_host="127.0.0.1", pop_port=str(demo.pop3_port),
                     pop_security="starttls", pop_username="demo",
                     password=demo.mailbox.password)
    assert resp.status_code == 302, resp.text


def test_the_hosts_password_goes_to_the_hosts_server_only(
        demo_app: tuple[Flask, Any, dict[str, str]]) -> None:
    app, demo, users = demo_app
    client = signed_in(app, users)
    with Trap() as trap:
        # A tampered post (another server in the hidden fields) changes nothing: the
        # provider's password is only ever sent to the provider's server, even where
        # the other server would be reachable (allowed here on purpose).
        app.config.update(POPACCOUNTS_ALLOW_PRIVATE_HOSTS=True,
                          POPACCOUNTS_ALLOWED_POP3_PORTS=(110, 995, trap.port))
        resp = post_form(client, f"{PREFIX}/add/pop3/demo", pop_host="127.0.0.1",
                         pop_port=str(trap.port), pop_username="someone-else")
        assert resp.status_code == 302, resp.text
        trap.assert_untouched()
    from flask_popaccounts.storage.models import Account

    with get_state(app).session_factory() as session:
        account = session.query(Account).one()
        assert (account.pop_host, account.pop_port, account.pop_username) == (
            "127.0.0.1", demo.pop3_port, "demo")
