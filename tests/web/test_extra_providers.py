"""POPACCOUNTS_EXTRA_PROVIDERS: the host's own providers, checked when the app starts."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from flask_popaccounts import PopAccounts
from flask_popaccounts.web.providers import extra_providers

GOOD = {"label": "Company mail", "pop_host": "pop.corp.example", "pop_port": "995"}


def test_defaults_are_filled_in_and_the_port_is_a_number() -> None:
    got = extra_providers({"POPACCOUNTS_EXTRA_PROVIDERS": {"corp": GOOD}})
    assert got == {"corp": {**GOOD, "pop_port": 995, "pop_security": "ssl",
                            "description": "", "pop_username": "", "email": "",
                            "name": "", "password": None}}
    assert extra_providers({}) == {}


@pytest.mark.parametrize(("key", "entry", "why"), [
    ("gmail", GOOD, "built-in"),
    ("Has Space", GOOD, "key"),
    ("x" * 33, GOOD, "key"),
    ("corp", {**GOOD, "pop_prot": 995}, "unknown keys"),
    ("corp", {"label": "No server"}, "missing"),
    ("corp", {**GOOD, "pop_security": "tls"}, "tls"),
    ("corp", {**GOOD, "password": "secret"}, "pop_username"),
])
def test_a_malformed_provider_fails_the_start_up(key: str, entry: dict[str, Any],
                                                 why: str) -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="x", POPACCOUNTS_DATABASE_URI="sqlite://",
                      POPACCOUNTS_EXTRA_PROVIDERS={key: entry})
    with pytest.raises(ValueError, match=why):
        PopAccounts(app)


def test_a_malformed_trusted_server_fails_the_start_up() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="x", POPACCOUNTS_DATABASE_URI="sqlite://",
                      POPACCOUNTS_TRUSTED_SERVERS=["localhost:995"])
    with pytest.raises(ValueError, match="POPACCOUNTS_TRUSTED_SERVERS"):
        PopAccounts(app)
