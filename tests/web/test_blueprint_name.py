"""The pages under another blueprint name and URL prefix: every GET page of the
blueprint (found in the app's URL map, so a new page cannot be forgotten) renders,
and every link, form and script in it points under the new prefix."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient
from werkzeug.exceptions import MethodNotAllowed, NotFound

from tests.support.dovecot import Dovecot

from .conftest import account_form, dovecot_config, login

NAME = "mailaccounts"
PREFIX = "/elsewhere/accounts"
DEFAULT_PREFIX = "/settings/mail-accounts"

#: The pages whose real answer to a plain GET is not 200.
EXPECTED_STATUS = {
    "oauth_callback": 400,  # no sign-in was started: "This sign-in expired ... Start again."
}


class _Targets(HTMLParser):
    """Every URL a page links to, submits to or loads: (tag, attribute, method, URL)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for attr in ("href", "action", "src", "formaction", "data-pa-progress-url"):
            url = values.get(attr)
            if url is not None:
                method = (values.get("method") or "get") if tag == "form" else "get"
                self.found.append((tag, attr, method.upper(), url))


def targets(html: str) -> list[tuple[str, str, str, str]]:
    parser = _Targets()
    parser.feed(html)
    return parser.found


@pytest.fixture
def renamed(make_app: Any, dovecot: Dovecot) -> Flask:
    app: Flask = make_app(POPACCOUNTS_BLUEPRINT_NAME=NAME, POPACCOUNTS_URL_PREFIX=PREFIX,
                          **dovecot_config(dovecot))
    return app


def _id(pattern: str, html: str) -> int:
    m = re.search(pattern, html)
    assert m, pattern
    return int(m.group(1))


def make_data(client: FlaskClient, mailbox: dict[str, str]) -> dict[str, Any]:
    """An account (signed in to Dovecot), a filter, a template and its send-as rows,
    all made through the pages; the ids the URL map's arguments need."""
    resp = client.post(f"{PREFIX}/add/pop3/other",
                       data=account_form(**mailbox, reply_to="replies@example.com"))
    assert resp.status_code == 302, resp.text
    assert resp.location.startswith(f"{PREFIX}/")
    account_id = _id(r"/(\d+)/connected$", resp.location)
    rule = {"name": "Bills", "enabled": "y", "match": "all", "cond-0-field": "subject",
            "cond-0-op": "contains", "cond-0-value": "invoice", "cond-0-header": "",
            "act-0-kind": "move", "act-0-value": "Bills"}
    assert client.post(f"{PREFIX}/{account_id}/filters/new", data=rule).status_code == 302
    assert client.post(f"{PREFIX}/{account_id}/templates/new", data={
        "name": "Thanks", "subject": "Thanks", "body": "Thank you, {recipient_name}."
    }).status_code == 302
    send_as = client.get(f"{PREFIX}/send-as").text  # lists (and so makes) the rows
    return {
        "account_id": account_id,
        "rule_id": _id(r'id="rule-(\d+)"', client.get(f"{PREFIX}/{account_id}/filters").text),
        "template_id": _id(r'id="template-(\d+)"',
                           client.get(f"{PREFIX}/{account_id}/templates").text),
        "send_as_id": _id(r'id="send-as-(\d+)"', send_as),
        "filename": "popaccounts/style.css",
    }


def assert_links_under_prefix(app: Flask, page: str, html: str) -> None:
    adapter = app.url_map.bind("localhost")
    assert DEFAULT_PREFIX not in html, page
    for tag, attr, method, url in targets(html):
        parts = urlsplit(url)
        if parts.scheme or parts.netloc or not parts.path:  # another site, or "#part"
            continue
        try:
            endpoint, _args = adapter.match(parts.path, method=method)
        except (NotFound, MethodNotAllowed):
            pytest.fail(f"{page}: <{tag} {attr}={url!r}> leads nowhere ({method})")
        if endpoint.startswith(f"{NAME}."):
            assert parts.path.startswith(PREFIX + "/"), (page, url)
        else:  # the host's own pages (mailbox, compose, sign-out)
            assert not endpoint.startswith("popaccounts."), (page, url)


def test_every_page_under_another_name_and_prefix(renamed: Flask,
                                                  mailbox: dict[str, str]) -> None:
    client = login(renamed.test_client())
    values = make_data(client, mailbox)
    rules = [r for r in renamed.url_map.iter_rules()
             if r.endpoint.startswith(f"{NAME}.") and "GET" in (r.methods or ())]
    assert not [r for r in renamed.url_map.iter_rules() if r.endpoint.startswith("popaccounts.")]
    assert len(rules) >= 20, [r.rule for r in rules]
    seen = set()
    for rule in rules:
        short = rule.endpoint.split(".", 1)[1]
        args = dict(values, provider="outlook" if short == "add_oauth" else "other")
        with renamed.test_request_context():
            url = url_for(rule.endpoint, **{a: args[a] for a in rule.arguments})
        assert url.startswith(PREFIX + "/"), url
        resp = client.get(url)
        assert resp.status_code == EXPECTED_STATUS.get(short, 200), (url, resp.status_code)
        seen.add(short)
        if resp.mimetype == "text/html":
            assert_links_under_prefix(renamed, url, resp.text)
    assert {"index", "edit", "filters", "templates", "send_as", "verify_send_as",
            "storage", "static"} <= seen

    index = client.get(f"{PREFIX}/").text
    assert f'href="{PREFIX}/static/popaccounts/style.css"' in index
    assert f'href="{PREFIX}/{values["account_id"]}/edit"' in index
    assert f'action="{PREFIX}/{values["account_id"]}/check"' in index
    # the host's own pages link to the extension's pages and scripts under the new prefix
    for host_page in ("/mail/", f"/mail/{values['account_id']}/", "/compose"):
        resp = client.get(host_page, follow_redirects=True)
        assert resp.status_code == 200, host_page
        assert_links_under_prefix(renamed, host_page, resp.text)
    compose = client.get("/compose").text
    assert f'src="{PREFIX}/static/popaccounts/signature-swap.js"' in compose
    assert f'href="{PREFIX}/send-as"' in client.get(f"/mail/{values['account_id']}/").text
