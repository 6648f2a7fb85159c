"""The site's own mailer and DMARC (issue 11 item 30): a From whose domain publishes
p=reject or p=quarantine is refused for "Send through this site's mail server" with an
explanation; the policy is looked up with dnspython in a local DNS server
(tests/support/dnsserver.py); failed look-ups block nothing; mail through the user's
own server is never looked up."""

from __future__ import annotations

import html

import pytest
from flask import Flask

from flask_popaccounts import get_state
from flask_popaccounts.services import dmarc
from flask_popaccounts.storage.models import Account
from tests.support.dnsserver import DNSServer
from tests.support.isolation import plain
from tests.support.smtpd import SMTPServers
from tests.web.conftest import login

from .conftest import make_account
from .test_pages_sending import account_row, outgoing, send, sent_copies, state_of


@pytest.fixture
def policies(dns_server: DNSServer) -> DNSServer:
    dns_server.txt.update({
        "_dmarc.strict30.example": ["v=DMARC1; p=reject; rua=mailto:d@strict30.example"],
        "_dmarc.spam30.example": ["v=DMARC1; p=quarantine"],
        "_dmarc.relaxed30.example": ["v=DMARC1; p=none"],
        "_dmarc.org30.example": ["v=DMARC1; p=none; sp=reject"],
        "_dmarc.two30.example": ["v=DMARC1; p=reject", "v=DMARC1; p=none"],
        "_dmarc.notdmarc30.example": ["v=spf1 -all"],
    })
    dns_server.servfail.add("_dmarc.broken30.example")
    return dns_server


@pytest.mark.parametrize("address,policy", [
    ("ann@strict30.example", "reject"),
    ("ann@spam30.example", "quarantine"),
    ("ann@mail.org30.example", "reject"),  # a subdomain: the organization's sp=
])
def test_a_strict_dmarc_domain_cannot_use_the_sites_mailer(
        send_app: Flask, smtpd: SMTPServers, policies: DNSServer, address: str,
        policy: str) -> None:
    account_id = make_account(send_app, address, "u", "p")
    client = login(send_app.test_client())
    resp = outgoing(client, account_id, mode="system")
    assert resp.status_code == 422, resp.text
    page = plain(html.unescape(resp.text))
    assert "Mail from this address cannot go through this site's mail server" in page
    assert f"{address} cannot go through" in page
    assert f"publishes a DMARC policy of p={policy}" in page
    assert "your provider's own outgoing server" in page
    assert smtpd.relayed(address) == []  # no code was sent for a route that cannot work
    assert account_row(send_app, account_id).smtp_auth_mode == "none"
    assert f"_dmarc.{address.split('@')[1]}" in policies.queries


@pytest.mark.parametrize("address", [
    "bea@relaxed30.example",  # p=none
    "bea@nothing30.example",  # no record at all
    "bea@two30.example",  # two DMARC records count as none
    "bea@notdmarc30.example",  # a TXT record that is not DMARC
    "bea@broken30.example",  # the resolver fails: never blocks sending
])
def test_other_domains_use_the_sites_mailer_and_send(
        send_app: Flask, smtpd: SMTPServers, policies: DNSServer, address: str) -> None:
    account_id = make_account(send_app, address, "u", "p")
    client = login(send_app.test_client())
    assert outgoing(client, account_id, mode="system").status_code == 302
    code = smtpd.code_for(address)
    client.post(f"/settings/mail-accounts/send-as/"
                f"{_from_row(send_app, account_id)}/verify", data={"code": code})
    assert state_of(client, address) == "verified"
    resp = send(client, account_id, to="friend30@example.org")
    assert resp.status_code == 302, resp.text
    got = smtpd.relayed("friend30@example.org")[-1]
    assert got.message["From"].addresses[0].addr_spec == address
    assert len(sent_copies(send_app, account_id)) == 1


def test_a_policy_published_later_stops_the_relay_at_send_time(
        send_app: Flask, smtpd: SMTPServers, policies: DNSServer) -> None:
    address = "cy@later30.example"
    account_id = make_account(send_app, address, "u", "p")
    client = login(send_app.test_client())
    assert outgoing(client, account_id, mode="system").status_code == 302
    client.post(f"/settings/mail-accounts/send-as/{_from_row(send_app, account_id)}/verify",
                data={"code": smtpd.code_for(address)})
    policies.txt["_dmarc.later30.example"] = ["v=DMARC1; p=reject"]
    before = len(smtpd.relayed())
    resp = send(client, account_id, to="friend30b@example.org")
    assert resp.status_code == 422
    assert "Mail from this address cannot go through this site's mail server" in html.unescape(
        resp.text)
    assert len(smtpd.relayed()) == before and sent_copies(send_app, account_id) == []


def test_the_users_own_server_is_never_looked_up(
        send_app: Flask, smtpd: SMTPServers, smtp_user: tuple[str, str],
        policies: DNSServer) -> None:
    login_name, secret = smtp_user
    account_id = make_account(send_app, login_name, login_name, secret)
    client = login(send_app.test_client())
    policies.queries.clear()
    assert outgoing(client, account_id, smtp_port=str(smtpd.smtps_port)).status_code == 302
    assert send(client, account_id).status_code == 302
    assert policies.queries == []


def test_an_unreachable_resolver_does_not_block(send_app: Flask) -> None:
    import socket

    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))  # bound, never answers: the look-up times out
    send_app.config.update(POPACCOUNTS_DNS_NAMESERVERS=[f"127.0.0.1:{dead.getsockname()[1]}"],
                           POPACCOUNTS_CONNECT_TIMEOUT=0.5)
    try:
        with pytest.raises(dmarc.DmarcLookupFailed):
            dmarc.lookup(send_app, "strict30.example")
        dmarc.check_relay_allowed(send_app, "ann@strict30.example")  # logs, lets it go
    finally:
        dead.close()


def _from_row(app: Flask, account_id: int) -> int:
    from .test_pages_sending import send_as_id

    with app.app_context():
        assert get_state(app).session_factory().get(Account, account_id) is not None
    return send_as_id(app, account_id)
