"""Driving the OAuth sign-in through the pages with Flask's test client: the start
form redirects to the local authorization server, whose consent form is filled in over
HTTP, and its redirect back is handed to the test client (what the pop-up does)."""

from __future__ import annotations

import html
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.support.authserver import AuthServer

from .conftest import PREFIX, MsUser


def start(client: FlaskClient, path: str, data: dict[str, Any]) -> str:
    """POST a start form; returns the provider's authorization URL it redirected to."""
    resp = client.post(path, data=data)
    assert resp.status_code == 302, resp.text
    return str(resp.headers["Location"])


def callback(client: FlaskClient, location: str) -> TestResponse:
    """Follow the provider's redirect back into the app (the callback request)."""
    parts = urlsplit(location)
    assert parts.path == f"{PREFIX}/oauth/callback", location
    return client.get(f"{parts.path}?{parts.query}")


def sign_in(client: FlaskClient, authsrv: AuthServer, path: str, data: dict[str, Any],
            user: MsUser, *, accept: bool = True) -> TestResponse:
    url = start(client, path, data)
    assert url.startswith(authsrv.authorize_url)
    return callback(client, authsrv.consent(url, user.username, user.password, accept=accept))


def add_form(user: MsUser, **over: Any) -> dict[str, Any]:
    data = {"email": user.email, "name": "Outlook mail", "delete_policy": "keep",
            "delete_after_days": "7", "popup": ""}
    data.update(over)
    return data


def popup_result(resp: TestResponse) -> dict[str, Any]:
    """The result the pop-up's page posts to its opener."""
    m = re.search(r'data-pa-oauth-result="([^"]*)"', resp.text)
    assert m, resp.text
    data: dict[str, Any] = json.loads(html.unescape(m.group(1)))
    return data


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
