"""Send mail as (R10, R11): the addresses a user may put in From and Reply-To.

Every address a message may carry as From or Reply-To is a
:class:`~..storage.models.SendAsAddress` row, and nothing goes out with one that is not
verified (:func:`is_verified`), whatever the page offered:

- From (``account.send_from``): verified when the account's own server authenticated and
  accepted it in the outgoing test (:mod:`.outgoing`); otherwise by a code emailed to it.
- Reply-To, when set and not the account's own address: always by a code (R11).

Codes themselves (random, hashed, expiring, attempt- and rate-limited) are
:mod:`.verification`'s; this module emails them through the host's relay.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..engine import addresses, message, smtp
from ..engine.clock import utcnow
from ..engine.errors import PopAccountsError
from ..i18n import N_, in_locale, isolate, ngettext
from ..i18n import gettext as _
from ..runtime import get_state
from ..storage.models import Account, SendAsAddress, VerificationCode
from . import relay, verification

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("flask_popaccounts.services.sendas")


class AddressNotVerified(PopAccountsError):
    code = "address_not_verified"
    title = N_("This address is not verified yet")
    help = N_(
        "Mail cannot go out from (or with a Reply-To of) an address until it is verified. "
        "Open “Send mail as”, click Verify by the address and enter the code we emailed to it."
    )


@dataclass
class SendAsView:
    """One row of the "Send mail as" page."""

    row: SendAsAddress
    account: Account
    state: str  #: see :func:`verification.state_of`
    attempts_left: int | None = None


def sync_send_as(session: Session, account: Account, *, now: datetime | None = None
                 ) -> list[SendAsAddress]:
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
                                address=address, created_at=now or utcnow())
            session.add(row)
        keep.append(row)
    stale = [r.id for r in existing if r not in keep]
    if stale:
        session.execute(delete(VerificationCode).where(VerificationCode.send_as_id.in_(stale)))
        session.execute(delete(SendAsAddress).where(SendAsAddress.id.in_(stale)))
    session.flush()
    return keep


def is_verified(session: Session, account: Account, kind: str, address: str) -> bool:
    """Whether the account may use ``address`` as its ``kind`` ("from" / "reply_to")."""
    return session.scalar(select(SendAsAddress.id).where(
        SendAsAddress.account_id == account.id, SendAsAddress.kind == kind,
        SendAsAddress.verified_at.is_not(None),
        SendAsAddress.address == address)) is not None


def owned_send_as(session: Session, owner_id: str, send_as_id: int) -> SendAsAddress | None:
    """A send-as row only if it belongs to this owner."""
    return session.scalar(select(SendAsAddress).where(
        SendAsAddress.id == int(send_as_id), SendAsAddress.owner_id == str(owner_id)))


def send_as_list(session: Session, app: Flask, owner_id: str, *, now: datetime | None = None
                 ) -> list[SendAsView]:
    """Every send-as address of the owner's accounts, with its state (syncs rows; commits)."""
    now = now or get_state(app).clock()
    accounts = list(session.scalars(select(Account).where(Account.owner_id == str(owner_id))
                                    .order_by(Account.is_default.desc(), Account.name)))
    out: list[SendAsView] = []
    for account in accounts:
        for row in sync_send_as(session, account, now=now):
            out.append(SendAsView(row=row, account=account,
                                  state=verification.state_of(session, row, now=now),
                                  attempts_left=verification.attempts_left(session, app, row)))
    session.commit()
    return out


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


# -- codes ---------------------------------------------------------------------------------


def _code_email_body(app: Flask, row: SendAsAddress, code: str) -> tuple[str, str]:
    """(subject, body) of the email that carries a code, in the current language."""
    name = app.config.get("POPACCOUNTS_SITE_NAME")
    site = str(name) if name else _("your webmail")
    hours = int(app.config["POPACCOUNTS_VERIFICATION_CODE_TTL"]) // 3600
    if row.kind == "from":
        asked = _("Someone (hopefully you) asked %(site)s to send mail as this address.",
                  site=isolate(site))
    else:
        asked = _("Someone (hopefully you) asked %(site)s to use this address as the Reply-To "
                  "of your mail.", site=isolate(site))
    # (the code alone, not isolated: it is copied from here into the form)
    body = "\n\n".join([
        asked, _("Your confirmation code is: %(code)s", code=code),
        ngettext("Enter it on the “Send mail as” page by this address. The code works for "
                 "%(num)s hour. If you did not ask for this, ignore this email: nothing "
                 "happens without the code.",
                 "Enter it on the “Send mail as” page by this address. The code works for "
                 "%(num)s hours. If you did not ask for this, ignore this email: nothing "
                 "happens without the code.", hours)]) + "\n"
    # (isolated in the body; not in the Subject, where the email package would fold the
    # isolate into an encoded word of its own and the space before it would be lost)
    return _("Your confirmation code for %(site)s", site=site), body


def send_code(session: Session, app: Flask, row: SendAsAddress, *,
              now: datetime | None = None, locale: str | None = None) -> None:
    """Issue a code for ``row`` and email it through the system mailer; commits.

    The email is written in the language of whoever asked for it: the request's, or
    ``locale`` when it is sent outside the request that asked (nothing is stored for
    it). The code and its count are committed before the mail leaves, so no write
    transaction stays open during the SMTP conversation (on SQLite it would lock out
    every fetch and page save meanwhile). If the email cannot be sent, the code is
    taken back (:func:`~.verification.withdraw_code`) and the named error is raised.
    """
    server, creds, net, sender = relay.system_relay(app)
    try:
        issued = verification.issue_code(session, app, row, now=now)
        with in_locale(locale):
            subject, body = _code_email_body(app, row, issued.code)
        sender_addr = addresses.parse_address(sender, field="from")
        msg = message.build_message(
            from_=sender_addr, to=[addresses.parse_address(row.address, field="to")],
            subject=subject, body=body, date=now or get_state(app).clock())
    except BaseException:
        session.rollback()
        raise
    session.commit()
    try:
        smtp.send(server, creds, net=net, mail_from=sender_addr.addr_spec,
                  rcpt_to=[row.address], data=message.message_bytes(msg),
                  local_hostname=relay.local_hostname(app))
    except BaseException:
        verification.withdraw_code(session, issued)
        raise


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
