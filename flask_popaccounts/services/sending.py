"""Sending as an account: its outgoing server (R9), send-as verification (R10, R11), compose.

An account sends either through its own SMTP server ("custom": tested with connect, TLS
verified, EHLO, AUTH and MAIL FROM before it is saved) or, when the user skips that
step, through the host's system relay (``POPACCOUNTS_SYSTEM_SMTP_*``). Every address a
message may carry as From or Reply-To is a :class:`~..models.SendAsAddress` row, and
:func:`send_message` refuses any that is not verified, whatever the page offered:

- From (``account.send_from``): verified when the account's own server authenticated and
  accepted it in the test; otherwise by a code emailed to it.
- Reply-To, when set and not the account's own address: always by a code (R11).

Functions that change data say whether they commit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.headerregistry import Address
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..config import net_policy
from ..engine import smtp
from ..engine.errors import InvalidAddress, InvalidInput, PopAccountsError
from ..engine.parse import parse_meta
from ..engine.types import AuthMethod, Credentials, NetPolicy, Security, ServerSpec
from ..runtime import get_state
from ..storage.mailstore import file_sent
from ..storage.models import Account, SendAsAddress, VerificationCode, utcnow, value_of
from . import verification
from .accounts import credentials_for
from .quota import space_left

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("flask_popaccounts.services.sending")

AUTH_MODES = ("same", "custom", "none")


class AddressNotVerified(PopAccountsError):
    code = "address_not_verified"
    title = "This address is not verified yet"
    help = (
        "Mail cannot go out from (or with a Reply-To of) an address until it is verified. "
        "Open “Send mail as”, click Verify by the address and enter the code we emailed to it."
    )


class StorageFullForSent(PopAccountsError):
    code = "storage_full_send"
    title = "Your mail storage is full"
    help = (
        "The message was not sent: its copy in Sent would not fit in your storage. Free "
        "space on the Storage page (empty Trash, delete old mail) and send it again."
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


@dataclass
class SendAsView:
    """One row of the "Send mail as" page."""

    row: SendAsAddress
    account: Account
    state: str  #: see :func:`verification.state_of`
    attempts_left: int | None = None


@dataclass
class SentResult:
    message_id: str
    sent_copy_id: int
    refused: dict[str, Any] = field(default_factory=dict)


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- policies ------------------------------------------------------------------------------


def smtp_net_policy(app: Flask) -> NetPolicy:
    """The network policy for users' SMTP servers (POPACCOUNTS_ALLOWED_SMTP_PORTS)."""
    return net_policy(app.config, "smtp")


def system_relay(app: Flask) -> tuple[ServerSpec, Credentials | None, NetPolicy, str]:
    """The host's own mailer: server, credentials, network policy and its From address.

    Configured by the host, so it is trusted: private addresses and its one port are
    allowed, and plaintext when the host chose it (a local relay on port 25).
    """
    cfg = app.config
    host = cfg.get("POPACCOUNTS_SYSTEM_SMTP_HOST")
    sender = cfg.get("POPACCOUNTS_SYSTEM_SMTP_FROM")
    if not host or not sender:
        raise verification.SystemMailerMissing()
    port = int(cfg["POPACCOUNTS_SYSTEM_SMTP_PORT"])
    security = Security(cfg["POPACCOUNTS_SYSTEM_SMTP_SECURITY"])
    base = smtp_net_policy(app)
    net = NetPolicy(
        allow_private=True, allowed_ports=frozenset({port}),
        allow_plaintext=security is Security.PLAIN,
        ca_file=cfg.get("POPACCOUNTS_SYSTEM_SMTP_CA_FILE") or base.ca_file,
        connect_timeout=base.connect_timeout, read_timeout=base.read_timeout,
    )
    user = cfg.get("POPACCOUNTS_SYSTEM_SMTP_USERNAME") or ""
    password = cfg.get("POPACCOUNTS_SYSTEM_SMTP_PASSWORD")
    creds = Credentials(AuthMethod.PASSWORD, str(password)) if user and password else None
    return ServerSpec(host=str(host), port=port, security=security, username=user), creds, net, \
        str(sender)


def _local_hostname(app: Flask) -> str:
    return str(app.config.get("POPACCOUNTS_SMTP_LOCAL_HOSTNAME") or "localhost")


def _outgoing_creds(app: Flask, account: Account, data: OutgoingInput | None = None
                    ) -> tuple[str, Credentials | None]:
    """(username, credentials) for the account's own server, per its auth mode."""
    mode = data.auth_mode if data is not None else account.smtp_auth_mode
    if mode == "none":
        return "", None
    if mode == "same":
        if value_of(account.auth_method) == AuthMethod.XOAUTH2.value:
            # An OAuth account: XOAUTH2 with an access token refreshed when near expiry.
            from .oauth import ensure_fresh_credentials

            return account.pop_username, ensure_fresh_credentials(app, account.id)
        return account.pop_username, credentials_for(app, account)
    if mode != "custom":
        raise InvalidInput("unknown authentication mode")
    if data is not None and data.password:
        return data.username, Credentials(AuthMethod.PASSWORD, data.password)
    if account.smtp_secret_enc is None:
        raise InvalidInput("A password for the outgoing server is required")
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
    username, creds = _outgoing_creds(app, account, data)
    server = ServerSpec(host=data.host.strip(), port=int(data.port),
                        security=Security(data.security), username=username)
    return smtp.check_smtp(server, creds, net=smtp_net_policy(app), sender=account.send_from,
                           local_hostname=_local_hostname(app))


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
            account.smtp_secret_enc = get_state(app).secrets.encrypt(data.password)
    else:
        account.smtp_username = None
        account.smtp_secret_enc = None
    account.smtp_verified = True
    rows = sync_send_as(session, account)
    if data.auth_mode != "none":
        for row in rows:
            if row.kind == "from" and row.verified_at is None:
                row.verified_at = utcnow()
                row.verified_by = "smtp"
    session.commit()
    return [r for r in rows if r.verified_at is None]


def use_system_relay(session: Session, app: Flask, account: Account) -> list[SendAsAddress]:
    """The user skipped the custom server: send through the host's relay; commits.

    Returns the addresses that need a code (the From, unless verified before).
    """
    system_relay(app)  # refuse early when the host has no mailer
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
    rows = sync_send_as(session, account)
    session.commit()
    return [r for r in rows if r.verified_at is None]


def sync_send_as(session: Session, account: Account) -> list[SendAsAddress]:
    """Make the account's send-as rows match its From and Reply-To; flushes.

    Rows of addresses the account no longer uses are removed (with their codes); a
    changed address starts unverified.
    """
    wanted: list[tuple[str, str]] = [("from", (account.send_from or account.email).strip())]
    reply_to = (account.reply_to or "").strip()
    if reply_to and reply_to.lower() != account.email.strip().lower():
        wanted.append(("reply_to", reply_to))
    existing = list(session.scalars(
        select(SendAsAddress).where(SendAsAddress.account_id == account.id)))
    keep: list[SendAsAddress] = []
    for kind, address in wanted:
        row = next((r for r in existing if r.kind == kind
                    and r.address.lower() == address.lower()), None)
        if row is None:
            row = SendAsAddress(account_id=account.id, owner_id=account.owner_id, kind=kind,
                                address=address, created_at=utcnow())
            session.add(row)
        keep.append(row)
    stale = [r.id for r in existing if r not in keep]
    if stale:
        session.execute(delete(VerificationCode).where(VerificationCode.send_as_id.in_(stale)))
        session.execute(delete(SendAsAddress).where(SendAsAddress.id.in_(stale)))
    session.flush()
    return keep


# -- codes ---------------------------------------------------------------------------------


def send_code(session: Session, app: Flask, row: SendAsAddress, *,
              now: datetime | None = None) -> None:
    """Issue a code for ``row`` and email it through the system mailer; commits.

    If the email cannot be sent, nothing is stored and the named error is raised.
    """
    server, creds, net, sender = system_relay(app)
    try:
        code = verification.issue_code(session, app, row, now=now)
        site = str(app.config.get("POPACCOUNTS_SITE_NAME") or "your webmail")
        hours = int(app.config["POPACCOUNTS_VERIFICATION_CODE_TTL"]) // 3600
        purpose = ("send mail as this address" if row.kind == "from"
                   else "use this address as the Reply-To of your mail")
        body = (
            f"Someone (hopefully you) asked {site} to {purpose}.\n\n"
            f"Your confirmation code is: {code}\n\n"
            f"Enter it on the “Send mail as” page by this address. The code works for "
            f"{hours} hours. If you did not ask for this, ignore this email: nothing "
            f"happens without the code.\n"
        )
        sender_addr = smtp.parse_address(sender, field="from")
        msg = smtp.build_message(
            from_=sender_addr,
            to=[smtp.parse_address(row.address, field="to")],
            subject=f"Your confirmation code for {site}",
            body=body,
        )
        smtp.send(server, creds, net=net, mail_from=sender_addr.addr_spec,
                  rcpt_to=[row.address], data=smtp.message_bytes(msg),
                  local_hostname=_local_hostname(app))
    except BaseException:
        session.rollback()
        raise
    session.commit()


def send_codes(session: Session, app: Flask, rows: Sequence[SendAsAddress]
               ) -> list[tuple[SendAsAddress, PopAccountsError | None]]:
    """Send a code to each row; returns each with the error that stopped it, if any."""
    out: list[tuple[SendAsAddress, PopAccountsError | None]] = []
    for row in rows:
        try:
            send_code(session, app, row)
            out.append((row, None))
        except PopAccountsError as exc:
            log.info("verification email to send-as %s failed: %s (%s)", row.id, exc.code,
                     exc.detail)
            out.append((row, exc))
    return out


def owned_send_as(session: Session, owner_id: str, send_as_id: int) -> SendAsAddress | None:
    """A send-as row only if it belongs to this owner."""
    return session.scalar(select(SendAsAddress).where(
        SendAsAddress.id == int(send_as_id), SendAsAddress.owner_id == str(owner_id)))


def send_as_list(session: Session, app: Flask, owner_id: str, *, now: datetime | None = None
                 ) -> list[SendAsView]:
    """Every send-as address of the owner's accounts, with its state (syncs rows; commits)."""
    accounts = list(session.scalars(select(Account).where(Account.owner_id == str(owner_id))
                                    .order_by(Account.is_default.desc(), Account.name)))
    out: list[SendAsView] = []
    for account in accounts:
        for row in sync_send_as(session, account):
            out.append(SendAsView(row=row, account=account,
                                  state=verification.state_of(session, row, now=now),
                                  attempts_left=verification.attempts_left(session, app, row)))
    session.commit()
    return out


def _verified(session: Session, account: Account, kind: str, address: str) -> bool:
    return session.scalar(select(SendAsAddress.id).where(
        SendAsAddress.account_id == account.id, SendAsAddress.kind == kind,
        SendAsAddress.verified_at.is_not(None),
        SendAsAddress.address == address)) is not None


def from_choices(session: Session, owner_id: str) -> list[tuple[Account, str]]:
    """(account, address) pairs the owner may send as right now: verified Froms only."""
    rows = session.execute(
        select(Account, SendAsAddress.address).join(
            SendAsAddress, SendAsAddress.account_id == Account.id)
        .where(Account.owner_id == str(owner_id), SendAsAddress.kind == "from",
               SendAsAddress.verified_at.is_not(None))
        .order_by(Account.is_default.desc(), Account.name)
    )
    return [(a, addr) for a, addr in rows if addr == (a.send_from or a.email)]


# -- compose -------------------------------------------------------------------------------


@dataclass
class Draft:
    """A message the user wrote (fields as typed; everything is checked in send_message)."""

    to: str
    subject: str
    body: str
    cc: str = ""
    bcc: str = ""
    in_reply_to: str = ""
    references: str = ""
    #: optional HTML alternative of ``body``: the caller makes it safe (the user's text
    #: escaped, only a sanitised signature as HTML: ``services.settings.html_body``)
    html: str = ""


def send_message(session: Session, app: Flask, account: Account, draft: Draft, *,
                 now: datetime | None = None) -> SentResult:
    """Build, check, send through the account's server and file a copy in Sent; commits.

    Refused here (server side), whatever the page offered: a From or Reply-To that is not
    verified (:class:`AddressNotVerified`), CR/LF or control characters in any header
    field (:class:`~..engine.errors.HeaderInjection`), addresses that do not parse
    strictly (:class:`~..engine.errors.InvalidAddress`).
    """
    sender = (account.send_from or account.email).strip()
    reply_to = (account.reply_to or "").strip()
    smtp.check_header_text(to=draft.to, cc=draft.cc, bcc=draft.bcc, subject=draft.subject,
                           in_reply_to=draft.in_reply_to, references=draft.references)
    if not _verified(session, account, "from", sender):
        raise AddressNotVerified(detail=f"from: account {account.id}")
    use_reply_to = bool(reply_to) and reply_to.lower() != account.email.strip().lower()
    if use_reply_to and not _verified(session, account, "reply_to", reply_to):
        raise AddressNotVerified(detail=f"reply_to: account {account.id}")
    to = smtp.parse_addresses(draft.to, field="to")
    cc = smtp.parse_addresses(draft.cc, field="cc")
    bcc = smtp.parse_addresses(draft.bcc, field="bcc")
    if not (to or cc or bcc):
        raise InvalidAddress("Add at least one recipient")
    from_addr = Address(display_name=account.name if account.name != account.email else "",
                        addr_spec=smtp.check_addr_spec(sender))
    msg = smtp.build_message(
        from_=from_addr, to=to, cc=cc, subject=draft.subject, body=draft.body,
        # (a Reply-To equal to the account's own address needs no verification)
        reply_to=Address(addr_spec=smtp.check_addr_spec(reply_to)) if reply_to else None,
        in_reply_to=draft.in_reply_to.strip() or None,
        references=draft.references.strip() or None,
        date=now,
    )
    if draft.html:
        msg.add_alternative(draft.html, subtype="html")
    rcpts = [a.addr_spec for a in (*to, *cc, *bcc)]
    # Like the big webmails: no room for the Sent copy, no sending (R19). Checked before
    # anything leaves, so a refused message was not sent either.
    left = space_left(app, session, account.owner_id)
    if left is not None and len(msg.as_bytes()) > left:
        raise StorageFullForSent(detail=f"account {account.id}: {left} bytes left")
    if account.smtp_host:
        username, creds = _outgoing_creds(app, account)
        server = ServerSpec(host=account.smtp_host, port=int(account.smtp_port or 0),
                            security=Security(account.smtp_security or "ssl"), username=username)
        net = smtp_net_policy(app)
        envelope_from = from_addr.addr_spec
    else:
        server, creds, net, system_from = system_relay(app)
        # The relay sends on the user's behalf: its own address is the envelope sender
        # and the Sender header, the verified address stays the From.
        system_addr = smtp.parse_address(system_from, field="sender")
        msg["Sender"] = system_addr
        envelope_from = system_addr.addr_spec
    data = smtp.message_bytes(msg)
    refused = smtp.send(server, creds, net=net, mail_from=envelope_from, rcpt_to=rcpts,
                        data=data, local_hostname=_local_hostname(app))
    header_end = data.find(b"\r\n\r\n")
    meta = parse_meta(data[: header_end + 4 if header_end >= 0 else len(data)], len(data),
                      now or _now())
    copy_id = file_sent(session, account.id, data, meta)
    session.commit()
    log.info("account %s sent a message to %d recipients", account.id, len(rcpts))
    return SentResult(message_id=str(msg["Message-ID"]), sent_copy_id=copy_id,
                      refused={k: v[0] for k, v in refused.items()})
