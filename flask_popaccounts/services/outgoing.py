"""An account's outgoing server (R9), and the one route mail takes to leave as it.

An account sends either through its own SMTP server ("custom": tested with connect, TLS
verified, EHLO, AUTH and MAIL FROM before it is saved) or, when the user skips that
step, through the host's system relay (:mod:`.relay`), unless the From's domain
publishes a strict DMARC policy (:mod:`.dmarc`: mail would bounce). :func:`route_for`
decides which, for every message that leaves as the account: the user's own mail
(:mod:`.sending`) and the filters' forwards and vacation replies (:mod:`.outbox`) alike.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..engine import addresses, safety, smtp
from ..engine.errors import InvalidInput
from ..engine.types import AuthMethod, Credentials, NetPolicy, Security, ServerSpec
from ..i18n import N_
from ..i18n import gettext as _
from ..runtime import get_state
from ..storage.models import Account, SendAsAddress
from . import credentials, dmarc, relay, sendas
from .relay import local_hostname

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["AUTH_MODES", "OutgoingInput", "Route", "local_hostname", "route_for",
           "save_outgoing", "test_outgoing", "use_system_relay"]

AUTH_MODES = ("same", "custom", "none")


class SMTPPasswordNeeded(InvalidInput):
    """A stored password would go to an outgoing server it was not entered for."""

    code = "smtp_password_for_new_server"
    title = N_("Enter the password again")
    help = N_(
        "You changed the outgoing server, port or username. A stored password is only "
        "ever sent to the server it was entered for, so type it again in “SMTP password”."
    )
    field = "smtp_password"


class SMTPPasswordElsewhere(SMTPPasswordNeeded):
    """A first outgoing server outside the incoming server's domain, "same" credentials."""

    code = "smtp_password_for_other_domain"
    title = N_("Enter the incoming password once more")
    help = N_(
        "This outgoing server is not in the incoming server's domain. Your stored "
        "password is only sent there once you type it in “SMTP password”."
    )


@dataclass
class OutgoingInput:
    """What the outgoing step collects."""

    host: str
    port: int
    security: Security
    auth_mode: str = "same"  #: same | custom | none
    username: str = ""
    password: str | None = None

    def __repr__(self) -> str:
        return f"OutgoingInput(host={self.host!r}, port={self.port}, password=<hidden>)"


def _moved(account: Account, data: OutgoingInput) -> bool:
    """The server in ``data`` is not the stored one (host, port or username)."""
    return (str(account.smtp_host or "").lower() != data.host.strip().lower()
            or int(account.smtp_port or 0) != int(data.port)
            or (data.auth_mode == "custom"
                and (account.smtp_username or "") != data.username))


def _beside_incoming(pop_host: str, smtp_host: str) -> bool:
    """Whether ``smtp_host`` is the incoming server's own host or a sibling of it.

    The sibling rule drops the incoming host's first label (``pop.gmail.com`` ->
    ``gmail.com``, ``pop.example.co.uk`` -> ``example.co.uk``) and wants the outgoing
    host to be that domain or under it; a two-label incoming host must be matched
    exactly or from below. Nothing else counts, so another customer of the same public
    suffix (``attacker.co.uk``) never does.
    """
    pop = pop_host.strip().rstrip(".").lower()
    smtp = smtp_host.strip().rstrip(".").lower()
    labels = pop.split(".")
    base = ".".join(labels[1:]) if len(labels) >= 3 and not pop.replace(".", "").isdigit() \
        else pop
    return smtp in (pop, base) or smtp.endswith("." + base)


def outgoing_creds(app: Flask, account: Account, data: OutgoingInput | None = None
                   ) -> tuple[str, Credentials | None]:
    """(username, credentials) for the account's own server, per its auth mode.

    "same": what the account signs in to POP3 with (an OAuth account: XOAUTH2 with an
    access token refreshed when near expiry); "custom": its own SMTP password. With
    ``data`` (a server being tested), a stored password is used only when the server is
    the stored one: moving an outgoing server that already had "same" or "custom"
    credentials to another host, port or username needs the password typed again
    (:class:`SMTPPasswordNeeded`), which is then used for the test (and, "custom",
    stored).
    """
    mode = data.auth_mode if data is not None else account.smtp_auth_mode
    if mode == "none":
        return "", None
    if mode not in ("same", "custom"):
        raise InvalidInput("unknown authentication mode")
    if data is not None and data.password:
        if mode == "same":
            # Later mail sends the *stored* incoming password there: the typed one must
            # be that password, not just one the new server accepts.
            stored = credentials.credentials_for(app, account)
            if stored.method is not AuthMethod.PASSWORD or not hmac.compare_digest(
                    stored.secret.encode(), data.password.encode()):
                raise SMTPPasswordNeeded(_(
                    "That is not the password this account signs in to incoming mail with."))
            return account.pop_username, stored
        return data.username, Credentials(AuthMethod.PASSWORD, data.password)
    had_creds = account.smtp_host is not None and account.smtp_auth_mode in ("same", "custom")
    if data is not None and had_creds and _moved(account, data):
        raise SMTPPasswordNeeded()
    if (data is not None and mode == "same" and not had_creds
            and not _beside_incoming(account.pop_host, data.host)):
        # A first outgoing server: the stored incoming password goes, untyped, only to
        # the incoming server's own domain (smtp.gmail.com beside pop.gmail.com).
        raise SMTPPasswordElsewhere()
    if mode == "same":
        return account.pop_username, credentials.credentials_for(app, account)
    if account.smtp_secret_enc is None:
        raise SMTPPasswordNeeded()
    username = data.username if data is not None else (account.smtp_username or "")
    secret = get_state(app).secrets.decrypt(account.smtp_secret_enc)
    return username, Credentials(AuthMethod.PASSWORD, secret)


# -- the outgoing step ---------------------------------------------------------------------------


def test_outgoing(app: Flask, account: Account, data: OutgoingInput) -> frozenset[str]:
    """Connect, verify TLS, EHLO, AUTH and MAIL FROM the account's From address (R9).

    Raises the engine's named errors (connection failed, certificate invalid, STARTTLS
    unavailable, authentication failed, sending not allowed...).
    """
    if data.auth_mode not in AUTH_MODES:
        raise InvalidInput("unknown authentication mode")
    username, creds = outgoing_creds(app, account, data)
    server = ServerSpec(host=data.host.strip(), port=int(data.port),
                        security=Security(data.security), username=username)
    return smtp.check_smtp(server, creds, net=relay.smtp_net_policy(app),
                           sender=account.send_from, local_hostname=local_hostname(app))


def save_outgoing(session: Session, app: Flask, account: Account, data: OutgoingInput
                  ) -> list[SendAsAddress]:
    """Store a custom server that :func:`test_outgoing` just accepted; commits.

    Returns the addresses that still need a code (a Reply-To, or the From when the server
    was used without authentication).
    """
    account.smtp_host = data.host.strip()
    account.smtp_port = int(data.port)
    account.smtp_security = Security(data.security).value
    account.smtp_auth_mode = data.auth_mode
    if data.auth_mode == "custom":
        account.smtp_username = data.username
        if data.password:
            account.smtp_secret_enc = credentials.encrypt_password(app, data.password)
    else:
        account.smtp_username = None
        account.smtp_secret_enc = None
    account.smtp_verified = True
    now = get_state(app).clock()
    rows = sendas.sync_send_as(session, account, now=now)
    if data.auth_mode != "none":
        for row in rows:
            if row.kind == "from" and row.verified_at is None:
                row.verified_at = now
                row.verified_by = "smtp"
    session.commit()
    return [r for r in rows if r.verified_at is None]


def use_system_relay(session: Session, app: Flask, account: Account) -> list[SendAsAddress]:
    """The user skipped the custom server: send through the host's relay; commits.

    Returns the addresses that need a code (the From, unless verified before).
    """
    relay.system_relay(app)  # refuse early when the host has no mailer
    # A From whose domain publishes p=reject/quarantine would bounce from our servers.
    dmarc.check_relay_allowed(app, (account.send_from or account.email).strip())
    if account.smtp_host is not None:
        # Leaving a custom server: its "verified by smtp" no longer vouches for anything.
        for row in session.scalars(select(SendAsAddress).where(
                SendAsAddress.account_id == account.id, SendAsAddress.verified_by == "smtp")):
            row.verified_at = None
            row.verified_by = None
    account.smtp_host = None
    account.smtp_port = None
    account.smtp_security = None
    account.smtp_auth_mode = "none"
    account.smtp_username = None
    account.smtp_secret_enc = None
    account.smtp_verified = False
    rows = sendas.sync_send_as(session, account, now=get_state(app).clock())
    session.commit()
    return [r for r in rows if r.verified_at is None]


# -- the route -----------------------------------------------------------------------------------


@dataclass
class Route:
    """How one message leaves as an account: server, credentials, network policy, the
    From header, the envelope sender, and (through the relay) the Sender header."""

    server: ServerSpec
    creds: Credentials | None = field(repr=False)
    net: NetPolicy
    from_addr: Address
    envelope_from: str
    sender: Address | None = None

    def stamp(self, msg: EmailMessage) -> None:
        """Add the Sender header the route needs (the relay sends on the user's behalf)."""
        if self.sender is not None:
            safety.check_address_parts("sender", [self.sender])
            msg["Sender"] = self.sender


def route_for(session: Session, app: Flask, account: Account) -> Route:
    """The route for mail from the account's From address, which must be verified
    (:class:`~.sendas.AddressNotVerified` otherwise).

    The account's own server sends with the From as envelope sender; the host's relay
    sends on the user's behalf: its own address is the envelope sender and the Sender
    header, the verified address stays the From.
    """
    addr = (account.send_from or account.email).strip()
    if not sendas.is_verified(session, account, "from", addr):
        raise sendas.AddressNotVerified(detail=f"from: account {account.id}")
    from_addr = Address(display_name=account.name if account.name != account.email else "",
                        addr_spec=addresses.check_addr_spec(addr))
    if account.smtp_host:
        username, creds = outgoing_creds(app, account)
        server = ServerSpec(host=account.smtp_host, port=int(account.smtp_port or 0),
                            security=Security(account.smtp_security or "ssl"), username=username)
        return Route(server, creds, relay.smtp_net_policy(app), from_addr, from_addr.addr_spec)
    server, creds, net, system_from = relay.system_relay(app)
    dmarc.check_relay_allowed(app, from_addr.addr_spec)  # (the policy may have changed)
    system_addr = addresses.parse_address(system_from, field="sender")
    return Route(server, creds, net, from_addr, system_addr.addr_spec, system_addr)
