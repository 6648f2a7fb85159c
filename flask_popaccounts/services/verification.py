"""Confirmation codes for send-as addresses (R10) and Reply-To addresses (R11).

A code is random (``secrets``), at least 6 digits, emailed through the host's system
mailer and stored only as an HMAC-SHA256 keyed with the app's ``SECRET_KEY`` (the code
space is small, so a plain hash of a leaked table would be brute-forced at once). It
expires (``POPACCOUNTS_VERIFICATION_CODE_TTL``, 24 h), allows a few wrong tries
(``POPACCOUNTS_VERIFICATION_MAX_ATTEMPTS``; then it is locked and a new code is needed),
is compared in constant time and never logged.

Sending a code is rate-limited, so that nobody can make the site's mailer write to
anyone at will. Every code email is a row of :class:`~..storage.models.CodeSend`
(owner, target address, time on the app's clock), kept apart from the send-as rows:
deleting an address and adding it again (toggling a Reply-To) resets nothing. Limits
(sliding windows):

- per target address, whoever asks: one per ``POPACCOUNTS_VERIFICATION_RESEND_SECONDS``
  and ``POPACCOUNTS_VERIFICATION_MAX_SENDS_PER_DAY`` per 24 h;
- per user, whatever the addresses: ``POPACCOUNTS_VERIFICATION_MAX_SENDS_PER_USER_PER_DAY``
  per 24 h;
- per site: ``POPACCOUNTS_VERIFICATION_MAX_SENDS_PER_SITE_PER_HOUR`` per hour.

A table rather than Flask-Limiter: these limits belong to the service (a code is sent
from the outgoing step, the send-as page and the resend button alike), must hold across
processes and restarts without a Redis, and read time from the app's clock like every
other rule here; Flask-Limiter limits requests to routes, keeps its counters in memory
unless given a separate store, and has its own clock.

Every function takes ``now=``; by default it is the app's clock (``state_of``, which
has no app: the system's).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from ..engine.clock import utcnow
from ..engine.errors import PopAccountsError
from ..i18n import N_, ngettext
from ..runtime import get_state
from ..storage.models import CodeSend, SendAsAddress, VerificationCode

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("flask_popaccounts.services.verification")

MIN_DIGITS = 6


class VerificationError(PopAccountsError):
    """A code could not be accepted or sent."""


class CodeInvalid(VerificationError):
    code = "code_invalid"
    title = N_("That code is not right")
    help = N_("Check the code in the email we sent to this address and enter it again.")


class CodeExpired(VerificationError):
    code = "code_expired"
    title = N_("That code has expired")
    help = N_("Codes are valid for a limited time. Send a new code and enter the new one.")


class CodeLocked(VerificationError):
    code = "code_locked"
    title = N_("Too many wrong codes")
    help = N_("For your safety this code no longer works. Send a new code and enter the new one.")


class NoCodeSent(VerificationError):
    code = "no_code"
    title = N_("No code was sent to this address yet")
    help = N_("Send a code first, then enter it here.")


class ResendTooSoon(VerificationError):
    code = "resend_too_soon"
    title = N_("A code was sent very recently")
    help = N_("Check your inbox (and spam folder) for the last code, or wait a minute and try "
              "again.")


class TooManyCodes(ResendTooSoon):
    code = "too_many_codes"
    title = N_("Too many codes were sent to this address today")
    help = N_("Use the last code we sent, or try again tomorrow.")


class TooManyCodesForUser(ResendTooSoon):
    code = "too_many_codes_user"
    title = N_("You asked for too many confirmation codes today")
    help = N_("Use a code we already sent (check the spam folder too), or try again "
              "tomorrow. Codes already sent keep working until they expire.")


class SiteCodeLimit(ResendTooSoon):
    code = "too_many_codes_site"
    title = N_("This site is sending too many confirmation codes right now")
    help = N_("Try again in an hour. Codes already sent keep working until they expire.")

    transient = True


#: Rows older than this are no longer in any window and are pruned.
_KEEP = timedelta(days=2)


def _sends_since(session: Session, since: datetime, **where: str) -> int:
    stmt = select(func.count()).select_from(CodeSend).where(CodeSend.sent_at > since)
    if "owner_id" in where:
        stmt = stmt.where(CodeSend.owner_id == where["owner_id"])
    if "address" in where:
        stmt = stmt.where(CodeSend.address == where["address"])
    return int(session.scalar(stmt) or 0)


def check_send_limits(session: Session, app: Flask, owner_id: str, address: str,
                      now: datetime) -> None:
    """Raise the named limit a new code to ``address`` asked by ``owner_id`` would break."""
    address = address.strip().lower()
    last = session.scalar(select(func.max(CodeSend.sent_at)).where(CodeSend.address == address))
    if last is not None:
        if last.tzinfo is None:
            last = last.replace(tzinfo=timezone.utc)
        if now - last < timedelta(seconds=_cfg(app, "RESEND_SECONDS")):
            raise ResendTooSoon()
    day = now - timedelta(days=1)
    if _sends_since(session, day, address=address) >= _cfg(app, "MAX_SENDS_PER_DAY"):
        raise TooManyCodes()
    if _sends_since(session, day, owner_id=str(owner_id)) >= _cfg(
            app, "MAX_SENDS_PER_USER_PER_DAY"):
        raise TooManyCodesForUser()
    if _sends_since(session, now - timedelta(hours=1)) >= _cfg(
            app, "MAX_SENDS_PER_SITE_PER_HOUR"):
        log.warning("the site's limit of confirmation codes per hour was reached")
        raise SiteCodeLimit()


def record_send(session: Session, owner_id: str, address: str, now: datetime) -> CodeSend:
    """Count one code email (and forget those no window needs any more); flushes."""
    session.execute(delete(CodeSend).where(CodeSend.sent_at < now - _KEEP))
    row = CodeSend(owner_id=str(owner_id), address=address.strip().lower(), sent_at=now)
    session.add(row)
    session.flush()
    return row


def _cfg(app: Flask, key: str) -> int:
    return int(app.config[f"POPACCOUNTS_VERIFICATION_{key}"])


def generate_code(digits: int = MIN_DIGITS) -> str:
    """A uniformly random code of ``digits`` (at least 6) decimal digits."""
    n = max(MIN_DIGITS, int(digits))
    return f"{secrets.randbelow(10 ** n):0{n}d}"


def hash_code(app: Flask, send_as_id: int, code: str) -> str:
    """HMAC-SHA256 of the code, bound to the address row (a code works for one address)."""
    secret = app.config.get("SECRET_KEY") or ""
    key = hmac.new(str(secret).encode(), b"popaccounts-verification-code",
                   hashlib.sha256).digest()
    return hmac.new(key, f"{send_as_id}:{code}".encode(), hashlib.sha256).hexdigest()


def normalize_code(text: str) -> str:
    """What the user typed, without spaces, dashes and direction marks (codes are read in
    groups, and copied out of right-to-left mail), in ASCII digits (an Arabic keyboard
    types Arabic-Indic digits)."""
    text = re.sub(r"[\s\-\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]", "", text or "")
    return "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in text)


def current_code(session: Session, send_as_id: int) -> VerificationCode | None:
    """The latest code sent to this address that was not replaced by a newer one."""
    return session.scalar(
        select(VerificationCode)
        .where(VerificationCode.send_as_id == send_as_id, VerificationCode.state != "replaced")
        .order_by(VerificationCode.created_at.desc(), VerificationCode.id.desc()).limit(1)
    )


def state_of(session: Session, row: SendAsAddress, *, now: datetime | None = None) -> str:
    """``verified`` | ``pending`` (a code is out) | ``expired`` | ``locked`` | ``not_sent``."""
    if row.verified_at is not None:
        return "verified"
    code = current_code(session, row.id)
    if code is None or code.state == "used":
        return "not_sent"
    if code.state == "locked":
        return "locked"
    if code.expires_at <= (now or utcnow()):
        return "expired"
    return "pending"


@dataclass(frozen=True)
class Issued:
    """A code just issued: the code itself (email it, never store or log it) and the rows
    that :func:`withdraw_code` takes back if the email cannot be sent."""

    code: str
    code_id: int
    send_id: int
    replaced_ids: tuple[int, ...]


def issue_code(session: Session, app: Flask, row: SendAsAddress, *,
               now: datetime | None = None) -> Issued:
    """Create a new code for ``row`` (rate-limited, counted); flushes, the caller commits.

    Earlier codes stop working (until :func:`withdraw_code`, if this one never left).
    """
    now = now or get_state(app).clock()
    check_send_limits(session, app, row.owner_id, row.address, now)
    send = record_send(session, row.owner_id, row.address, now)
    replaced = tuple(session.scalars(select(VerificationCode.id).where(
        VerificationCode.send_as_id == row.id, VerificationCode.state == "active")))
    session.execute(
        update(VerificationCode).where(VerificationCode.id.in_(replaced))
        .values(state="replaced").execution_options(synchronize_session=False))
    code = generate_code(_cfg(app, "CODE_DIGITS"))
    new = VerificationCode(
        send_as_id=row.id, code_hash=hash_code(app, row.id, code), created_at=now,
        expires_at=now + timedelta(seconds=_cfg(app, "CODE_TTL")), attempts=0, state="active",
    )
    session.add(new)
    session.flush()
    log.info("verification code issued for send-as %s", row.id)  # never the code
    return Issued(code=code, code_id=new.id, send_id=send.id, replaced_ids=replaced)


def withdraw_code(session: Session, issued: Issued) -> None:
    """Take back a committed code whose email could not be sent; commits.

    It never counted against a limit, and the codes it replaced work again (the user
    may still have the last one in their inbox).
    """
    session.rollback()
    session.execute(delete(VerificationCode).where(VerificationCode.id == issued.code_id))
    session.execute(delete(CodeSend).where(CodeSend.id == issued.send_id))
    if issued.replaced_ids:
        session.execute(
            update(VerificationCode)
            .where(VerificationCode.id.in_(issued.replaced_ids),
                   VerificationCode.state == "replaced")
            .values(state="active").execution_options(synchronize_session=False))
    session.commit()


def check_code(session: Session, app: Flask, row: SendAsAddress, typed: str, *,
               now: datetime | None = None) -> None:
    """Accept the code (the address becomes verified) or raise a VerificationError; commits.

    A wrong code uses up one attempt, counted with an atomic conditional UPDATE so that
    parallel guesses cannot exceed the limit.
    """
    now = now or get_state(app).clock()
    if row.verified_at is not None:
        return
    code = current_code(session, row.id)
    if code is None or code.state == "used":
        raise NoCodeSent()
    if code.state == "locked":
        raise CodeLocked()
    if code.expires_at <= now:
        raise CodeExpired()
    max_attempts = _cfg(app, "MAX_ATTEMPTS")
    typed = normalize_code(typed)
    expected = code.code_hash
    given = hash_code(app, row.id, typed) if typed.isdigit() else "0" * 64
    if hmac.compare_digest(given, expected):
        used = session.execute(
            update(VerificationCode)
            .where(VerificationCode.id == code.id, VerificationCode.state == "active",
                   VerificationCode.attempts < max_attempts)
            .values(state="used")
        )
        if getattr(used, "rowcount", 0) != 1:
            session.rollback()
            raise CodeLocked()
        row.verified_at = now
        row.verified_by = "code"
        session.commit()
        log.info("send-as %s verified by code", row.id)
        return
    counted = session.execute(
        update(VerificationCode)
        .where(VerificationCode.id == code.id, VerificationCode.state == "active",
               VerificationCode.attempts < max_attempts)
        .values(attempts=VerificationCode.attempts + 1)
    )
    session.execute(
        update(VerificationCode)
        .where(VerificationCode.id == code.id, VerificationCode.attempts >= max_attempts)
        .values(state="locked")
    )
    session.commit()
    session.refresh(code)
    if getattr(counted, "rowcount", 0) != 1 or code.state == "locked":
        raise CodeLocked()
    left = max_attempts - code.attempts
    raise CodeInvalid(ngettext("That code is not right (%(num)s try left)",
                               "That code is not right (%(num)s tries left)", left))


def attempts_left(session: Session, app: Flask, row: SendAsAddress) -> int | None:
    """Wrong tries still allowed on the current code (None when there is no live code)."""
    code = current_code(session, row.id)
    if code is None or code.state != "active":
        return None
    return max(0, _cfg(app, "MAX_ATTEMPTS") - code.attempts)
