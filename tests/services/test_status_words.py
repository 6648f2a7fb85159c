"""The account card's words fit the account (issue 12): its port and security for a
certificate error, its provider for a refused password, the reader's clock for a retry."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from flask_popaccounts.engine import errors as E
from flask_popaccounts.services import health
from flask_popaccounts.storage.models import Account, AccountStatus


def _account(status: AccountStatus, code: str | None, **kw: object) -> Account:
    values: dict[str, object] = dict(
        owner_id="1", email="ann@example.net", name="Ann", enabled=True, provider="other",
        pop_host="pop.example.net", pop_port=995, pop_security="ssl", pop_username="ann",
        status=status.value, last_error_code=code)
    values.update(kw)
    return Account(**values)


@pytest.mark.parametrize(("security", "port"), [("starttls", 110), ("plain", 110)])
def test_a_certificate_card_on_a_starttls_port_never_talks_about_995(
        security: str, port: int) -> None:
    view = health.status_view(_account(AccountStatus.NEEDS_ATTENTION, "certificate_invalid",
                                       pop_security=security, pop_port=port))
    assert view.label == "Needs your attention: Invalid certificate"
    assert "995" not in view.explanation and "cannot be reached" not in view.explanation


def test_a_certificate_card_on_995_says_that_port_needs_a_valid_certificate() -> None:
    view = health.status_view(_account(AccountStatus.NEEDS_ATTENTION, "certificate_invalid"))
    assert view.explanation == E.CertificateInvalid.HELP_SSL_995


@pytest.mark.parametrize("provider", ["other", "gmail"])
def test_a_refused_password_card_never_points_at_the_server_name_or_port(
        provider: str) -> None:
    view = health.status_view(_account(AccountStatus.NEEDS_PASSWORD, "auth_failed",
                                       provider=provider))
    assert view.label == "Needs your attention: update the password"
    words = view.explanation.lower()
    assert words.startswith("fetching stopped: the server refused the password. ")
    assert not [w for w in ("server name", "host name", "port") if w in words]
    assert "app password" in words
    if provider == "gmail":
        assert E.AuthenticationFailed.HELP_GMAIL in view.explanation


def test_a_retry_says_when_in_the_readers_clock_not_a_literal_utc() -> None:
    due = datetime(2026, 3, 12, 16, 5, tzinfo=timezone.utc)
    view = health.status_view(_account(AccountStatus.RETRYING, "connection_failed",
                                       next_due_at=due))
    assert view.label == "Retrying: Connection failed"
    assert view.explanation.startswith(E.ConnectionFailed.help + " Next try at \u2068")
    assert "4:05" in view.explanation and "UTC" not in view.explanation
