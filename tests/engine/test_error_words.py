"""The words of two failures fit what actually happened (issue 12's wording faults).

- A certificate error names the connection that was used: on a STARTTLS port (110 for
  POP3, 587 for SMTP) it never advises port 995; SSL on port 995 says that port needs a
  valid certificate (R22).
- An authentication failure never sends the user to check the server name or port: the
  server was reached and answered, so the username, the password or an app password is
  the problem (R21, R24); Gmail's words name its app password (R14).
"""

from __future__ import annotations

import pytest

from flask_popaccounts.engine import errors as E

NOT_REACHABLE = "cannot be reached"


@pytest.mark.parametrize("port", [110, 587, 2110])
def test_a_certificate_error_after_starttls_never_talks_about_995(port: int) -> None:
    words = E.CertificateInvalid.help_for("starttls", port)
    assert words == E.CertificateInvalid.HELP_STARTTLS
    assert "995" not in words and NOT_REACHABLE not in words
    assert "STARTTLS" in words and "before sending your password" in words


def test_a_certificate_error_on_ssl_says_what_the_port_needs() -> None:
    on_995 = E.CertificateInvalid.help_for("ssl", 995)
    assert "port 995 (SSL) works only with a valid certificate" in on_995
    assert "Self-signed certificates are refused" in on_995
    for port in (465, 2995):  # SMTP's SSL port, a host's own: no other port named
        words = E.CertificateInvalid.help_for("ssl", port)
        assert "995" not in words and "SSL works only with a valid certificate" in words
    assert E.CertificateInvalid.help_for(None) == E.CertificateInvalid.help  # unknown: generic
    assert "995" not in E.CertificateInvalid.help


_SERVER_ADVICE = ("server name", "host name", "port", NOT_REACHABLE)


@pytest.mark.parametrize("provider", [None, "other", "gmail", "outlook"])
def test_an_authentication_failure_never_points_at_the_server_name_or_port(
        provider: str | None) -> None:
    for cls in (E.AuthenticationFailed, E.SMTPAuthFailed, E.TokenRejected):
        words = f"{cls.title}. {cls.help_for(provider)}".lower()
        assert not [w for w in _SERVER_ADVICE if w in words], (cls.__name__, words)
    pop = E.AuthenticationFailed.help_for(provider)
    assert "app password" in pop  # where the text already said so, it still does
    if provider == "gmail":
        assert pop == E.AuthenticationFailed.HELP_GMAIL
        assert "not your Google password" in pop and "POP is enabled" in pop
    else:
        assert pop == E.AuthenticationFailed.help
    assert "app password" in E.SMTPAuthFailed.help
    assert E.SMTPAuthFailed.help_for("gmail") == E.SMTPAuthFailed.help  # its own words


def test_titles_and_helps_are_whole_msgids() -> None:
    """No help is built at run time: each is a constant a catalogue can hold (the web
    shows _(err.title) and _(err.help))."""
    for cls in E.registered_codes().values():
        for text in (cls.title, cls.help):
            assert text == text.strip() and "%(" not in text and "{" not in text, cls
