"""Account health: what a fetch's outcome does to the account, and what its card says.

The outcome of every fetch (and of a refused OAuth refresh) is recorded here:

- success (:func:`record_success`): status OK, failures cleared, next fetch after the
  account's interval;
- a transient failure (connection, timeout, [IN-USE], [SYS/TEMP]): status RETRYING,
  next try after :func:`backoff_seconds` (exponential, capped, with jitter);
- LOGIN-DELAY (RFC 2449): a success is next due no sooner than the delay the server
  announced; a ``[LOGIN-DELAY]`` refusal is due again after that delay, and neither
  grows the back-off nor counts as a failure (it is the server's rule, not a fault);
- an authentication failure: NEEDS_PASSWORD (NEEDS_REAUTH for a rejected OAuth token)
  and no further automatic fetching, and no login attempt at all, until the user gives
  a new password (R7): lock-outs at the provider are worse than a pause;
- the owner's storage is full (:func:`hold_for_quota`): PAUSED_QUOTA, re-checked after
  the interval (R19);
- any other failure only the user can fix (certificate, no UIDL, UIDL reset...):
  NEEDS_ATTENTION, likewise paused (the user may still press "check now").

Each ``record_*`` may give the fetch's lease back in the same transaction
(``release_owner``), so an idle poll writes twice in all: the claim and the outcome.
:func:`status_view` turns the result into plain words for the card, in the reader's
language (it runs in the request; :func:`card_help` picks the help that fits the account).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from ..engine.errors import (
    AuthenticationFailed,
    CertificateInvalid,
    LoginDelay,
    PopAccountsError,
    QuotaExceeded,
    TokenRejected,
    error_for_code,
)
from ..i18n import N_, format_datetime, isolate
from ..i18n import gettext as _
from ..signals import account_recovered
from ..signals import send as send_signal
from ..storage.models import Account, AccountStatus, value_of
from . import progress, scheduling
from .texts import sentences

if TYPE_CHECKING:
    from flask import Flask

#: Statuses that stop fetching until the user gives a new password / re-authenticates.
CREDENTIAL_STATUSES = frozenset({AccountStatus.NEEDS_PASSWORD.value,
                                 AccountStatus.NEEDS_REAUTH.value})


def backoff_seconds(failures: int, *, base: float, cap: float,
                    rng: random.Random | Any = random) -> float:
    """The one back-off formula: ``base * 2^(failures-1)``, capped, times 0.5 to 1.0.

    The jitter spreads the retries of many accounts that failed together (a provider's
    outage) instead of sending them back at the same second.
    """
    delay = min(cap, base * (2 ** max(0, failures - 1)))
    return float(delay * rng.uniform(0.5, 1.0))


#: Share of the interval by which the next check may come early: spreads the polls of
#: accounts fetched together (all at once after a restart or a first sync) over time.
INTERVAL_JITTER = 0.1


def spread_interval(seconds: float, rng: random.Random | Any = random) -> float:
    """The time to the next check: the interval, up to :data:`INTERVAL_JITTER` less.

    Never later than the user's interval; accounts that were polled in the same second
    drift apart by a random share at every check instead of staying in lock-step.
    """
    return float(seconds * (1 - INTERVAL_JITTER * rng.random()))


def fetch_backoff_seconds(app: Flask, failures: int) -> float:
    """The back-off after ``failures`` failed fetches in a row (the host's settings)."""
    return backoff_seconds(failures, base=float(app.config["POPACCOUNTS_BACKOFF_BASE_SECONDS"]),
                           cap=float(app.config["POPACCOUNTS_BACKOFF_MAX_SECONDS"]))


def interval_seconds(app: Flask, account: Account) -> float:
    """The account's fetch interval in seconds.

    ``POPACCOUNTS_INTERVAL_UNIT_SECONDS`` (default 60) is the length of one interval
    "minute"; tests shorten it to watch intervals being honoured in real time.
    """
    unit = float(app.config.get("POPACCOUNTS_INTERVAL_UNIT_SECONDS", 60))
    return int(account.fetch_interval_minutes or 5) * unit


def _attempted(session: Session, account: Account, *, now: datetime,
               release_owner: str | None) -> None:
    account.last_attempt_at = now
    account.last_fetch_stored = None  # (a success sets it again)
    progress.clear_columns(account)
    scheduling.stage_release(session, release_owner, account.id)


def _failed(account: Account, code: str, now: datetime) -> None:
    account.last_error_code = code
    account.last_error_at = now
    account.consecutive_failures = int(account.consecutive_failures or 0) + 1


def record_success(app: Flask, session: Session, account: Account, *, now: datetime,
                   release_owner: str | None = None, login_delay: int | None = None,
                   stored: int | None = None) -> bool:
    """Mark a successful fetch; commits; True when the account recovered from failures.

    ``login_delay``: the server's CAPA LOGIN-DELAY, the least wait till the next login;
    ``stored``: how many messages the fetch stored (the card's result).
    """
    recovered = int(account.consecutive_failures or 0) > 0 or value_of(account.status) not in (
        AccountStatus.OK.value, AccountStatus.NEW.value)
    _attempted(session, account, now=now, release_owner=release_owner)
    account.status = AccountStatus.OK.value  # type: ignore[assignment]
    account.last_success_at = now
    account.last_fetch_stored = stored
    account.last_error_code = None
    account.consecutive_failures = 0
    account.accept_uidl_reset = False  # a confirmation is good for one import only
    # The server's LOGIN-DELAY is a floor the jitter must not undercut.
    account.next_due_at = now + timedelta(seconds=max(
        spread_interval(interval_seconds(app, account)), float(login_delay or 0)))
    session.commit()
    return recovered


def record_failure(app: Flask, session: Session, account: Account, exc: PopAccountsError,
                   *, now: datetime, release_owner: str | None = None) -> bool:
    """Mark a failed fetch; commits; True when automatic fetching stopped (user must act)."""
    _attempted(session, account, now=now, release_owner=release_owner)
    if isinstance(exc, LoginDelay):  # the server's pace, not a failure: no back-off
        account.status = AccountStatus.RETRYING.value  # type: ignore[assignment]
        account.last_error_code, account.last_error_at = exc.code, now
        account.next_due_at = now + timedelta(
            seconds=float(exc.seconds or interval_seconds(app, account)))
        session.commit()
        return False
    _failed(account, exc.code, now)
    if isinstance(exc, QuotaExceeded):  # R19: paused, re-checked after the interval
        hold_for_quota(app, session, account, now=now)
        return False
    stopped = True
    if isinstance(exc, TokenRejected):
        account.status = AccountStatus.NEEDS_REAUTH.value  # type: ignore[assignment]
    elif isinstance(exc, AuthenticationFailed):
        account.status = AccountStatus.NEEDS_PASSWORD.value  # type: ignore[assignment]
    elif exc.transient:
        stopped = False
        account.status = AccountStatus.RETRYING.value  # type: ignore[assignment]
        account.next_due_at = now + timedelta(
            seconds=fetch_backoff_seconds(app, account.consecutive_failures))
    else:
        account.status = AccountStatus.NEEDS_ATTENTION.value  # type: ignore[assignment]
    session.commit()
    return stopped


def record_crash(app: Flask, session: Session, account: Account, *, now: datetime,
                 release_owner: str | None = None) -> None:
    """A fetch ended by an unexpected error (a bug, the database): back off like a
    transient failure, so the account is not retried at every tick; commits."""
    _attempted(session, account, now=now, release_owner=release_owner)
    _failed(account, "internal_error", now)
    account.next_due_at = now + timedelta(
        seconds=fetch_backoff_seconds(app, account.consecutive_failures))
    session.commit()


def hold_for_quota(app: Flask, session: Session, account: Account, *, now: datetime) -> None:
    """Mark the account paused for the quota, re-checked after its interval; commits."""
    account.status = AccountStatus.PAUSED_QUOTA.value  # type: ignore[assignment]
    account.last_error_code = QuotaExceeded.code
    account.last_error_at = now
    account.last_attempt_at = now
    account.next_due_at = now + timedelta(seconds=interval_seconds(app, account))
    session.commit()


def resting_status(account: Account) -> AccountStatus:
    """OK once the account has ever fetched, else NEW."""
    return AccountStatus.OK if account.last_success_at else AccountStatus.NEW


def reset_health(app: Flask, account: Account, *, now: datetime) -> None:
    """The user fixed what stopped the account: due at once, failures forgotten (no
    commit); tells the host (``account_recovered``)."""
    account.status = resting_status(account)
    account.last_error_code = None
    account.consecutive_failures = 0
    account.next_due_at = now
    send_signal(account_recovered, app, account_id=account.id)


@dataclass(frozen=True)
class StatusView:
    """What the account card says about the account's health, in plain words (in the
    reader's language: built during the request)."""

    label: str
    explanation: str
    tone: str  #: "ok" | "info" | "warning" | "error" (a CSS hook)


_QUOTA_HELP = N_("Fetching is paused. The mail already fetched is kept and the rest waits on "
                 "the server; nothing was deleted there that is not stored here. Free space on "
                 "the Storage page (empty Trash, delete old mail) and fetching resumes by "
                 "itself.")


#: ``fetch_warning`` tokens (services.mailproblems) that change the card's "Working".
_DELE_WARNINGS = {
    "dele_refused": (N_("Working, but the server refuses to delete mail"),
                     N_("Mail is fetched, but the server answered with an error when asked to "
                        "delete messages already stored here. They stay on the server; "
                        "deleting them is tried again once a day.")),
    "dele_ignored": (N_("Working, but the server does not delete mail"),
                     N_("The server said it deleted messages already stored here, but it still "
                        "lists them. They are not fetched twice; deleting them is tried again "
                        "once a day. Check the provider's POP settings (some keep a copy).")),
}


def card_help(err: type[PopAccountsError], account: Account) -> str:
    """The help (a msgid) that fits the account: a certificate error in the words of its
    port and security (no advice about port 995 on a STARTTLS port), Gmail's refusal of a
    password in Gmail's terms (an app password)."""
    if issubclass(err, CertificateInvalid):
        return err.help_for(value_of(account.pop_security), account.pop_port)
    if issubclass(err, AuthenticationFailed):
        return err.help_for(account.provider)
    return err.help


def status_view(account: Account) -> StatusView:
    """The account's health in plain words (never the server's own text)."""
    status = value_of(account.status)
    if not account.enabled:
        return StatusView(_("Disabled"), _("Automatic fetching is switched off for this "
                                           "account. Enable it to fetch mail again."), "info")
    code = account.last_error_code or ""
    err = error_for_code(code) if code else None
    if status == AccountStatus.NEEDS_PASSWORD.value:
        return StatusView(_("Needs your attention: update the password"), sentences(
            _("Fetching stopped: the server refused the password."),
            _(card_help(err, account)) if err else ""), "error")
    if status == AccountStatus.NEEDS_REAUTH.value:
        return StatusView(_("Needs your attention: re-authenticate"),
                          _("Fetching stopped: the provider no longer accepts this account's "
                            "authorization. Click Authenticate and sign in again."), "error")
    if status == AccountStatus.NEEDS_ATTENTION.value and err is not None:
        return StatusView(_("Needs your attention: %(problem)s", problem=_(err.title)),
                          _(card_help(err, account)), "error")
    if status == AccountStatus.PAUSED_QUOTA.value:  # R19 (services.quota)
        return StatusView(_("Paused: your mail storage is full"), _(_QUOTA_HELP), "warning")
    if status == AccountStatus.RETRYING.value and err is not None:
        when = ""
        if account.next_due_at is not None:  # in the reader's time zone and words
            when = _("Next try at %(time)s.",
                     time=isolate(format_datetime(account.next_due_at)))
        return StatusView(_("Retrying: %(problem)s", problem=_(err.title)),
                          sentences(_(card_help(err, account)), when), "warning")
    if status == AccountStatus.OK.value:
        # (when it was last checked is the card's own "Last checked" field)
        warning = _DELE_WARNINGS.get((account.fetch_warning or "").split(" ")[0])
        if warning is not None:
            return StatusView(_(warning[0]), _(warning[1]), "warning")
        return StatusView(_("Working"), "", "ok")
    return StatusView(_("Waiting for the first fetch"),
                      _("The account is saved; its mail will be fetched shortly."), "info")
