"""Account management: test the incoming server, create, update, delete, describe.

The only place where account rows meet the engine's login check. Every function that
changes data commits its own transaction; none of them ever returns or logs a secret.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from werkzeug.exceptions import NotFound

from ..config import net_policy
from ..engine.errors import InvalidInput, UIDLReset, error_for_code
from ..engine.types import (
    AuthMethod,
    Credentials,
    DeletePolicy,
    RetrievalPolicy,
    Security,
    ServerSpec,
)
from ..runtime import get_state
from ..storage.mailstore import delete_account_data, ensure_default_folders
from ..storage.models import Account, AccountStatus, value_of

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("flask_popaccounts.services.accounts")

#: Statuses that stop fetching until the user gives a new password / re-authenticates.
CREDENTIAL_STATUSES = frozenset({AccountStatus.NEEDS_PASSWORD.value,
                                 AccountStatus.NEEDS_REAUTH.value})


@dataclass
class AccountInput:
    """What the add/edit form collects (already validated for format by the form)."""

    email: str
    name: str
    send_from: str
    reply_to: str
    is_default: bool
    provider: str
    pop_host: str
    pop_port: int
    pop_security: Security
    pop_username: str
    password: str | None  #: None keeps the stored secret (edit without a new password)
    delete_policy: DeletePolicy = DeletePolicy.KEEP
    delete_after_days: int = 0
    fetch_interval_minutes: int = 5

    def __repr__(self) -> str:  # the password never reaches a log line
        return f"AccountInput(email={self.email!r}, pop_host={self.pop_host!r}, password=<hidden>)"


@dataclass(frozen=True)
class StatusView:
    """What the account card says about the account's health, in plain words."""

    label: str
    explanation: str
    tone: str  #: "ok" | "info" | "warning" | "error" (a CSS hook)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _has_control(value: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in value)


def check_input(data: AccountInput) -> None:
    """Refuse CR/LF and control characters in anything that reaches a protocol line."""
    fields = [data.email, data.name, data.send_from, data.reply_to, data.pop_host,
              data.pop_username, data.provider]
    if data.password is not None:
        fields.append(data.password)
    if any(_has_control(v or "") for v in fields):
        raise InvalidInput()
    host = data.pop_host.strip()
    if not host or " " in host:
        raise InvalidInput("The host name is empty or contains spaces")


def clamp_interval(app: Flask, minutes: int) -> int:
    """The fetch interval within the allowed range (3-60 minutes, as the seed's product)."""
    lo = int(app.config.get("POPACCOUNTS_MIN_INTERVAL_MINUTES", 3))
    hi = int(app.config.get("POPACCOUNTS_MAX_INTERVAL_MINUTES", 60))
    return max(lo, min(hi, int(minutes)))


# -- engine inputs -----------------------------------------------------------------------


def server_spec_for(account: Account) -> ServerSpec:
    """Where and how to connect for this account."""
    return ServerSpec(
        host=account.pop_host,
        port=int(account.pop_port),
        security=Security(account.pop_security),
        username=account.pop_username,
    )


def credentials_for(app: Flask, account: Account) -> Credentials:
    """The decrypted secret as engine Credentials (never store or log the result)."""
    if account.secret_enc is None:
        raise InvalidInput("This account has no stored password")
    plain = get_state(app).secrets.decrypt(account.secret_enc)
    method = AuthMethod(account.auth_method)
    if method is AuthMethod.XOAUTH2 and account.id is not None:
        from .oauth import ensure_fresh_credentials  # late: oauth imports this module

        return ensure_fresh_credentials(app, account.id)  # refreshed if it expires soon
    if method is AuthMethod.XOAUTH2:
        # OAuth accounts keep a JSON token set; the oauth service refreshes it.
        try:
            token = json.loads(plain).get("access_token", "")
        except (ValueError, AttributeError):
            token = plain
        return Credentials(method=method, secret=str(token))
    return Credentials(method=method, secret=plain)


def retrieval_policy_for(app: Flask, account: Account) -> RetrievalPolicy:
    """The account's retrieval settings, bounded by the host's configuration."""
    cfg = app.config
    return RetrievalPolicy(
        delete=DeletePolicy(account.delete_policy),
        delete_after_days=int(account.delete_after_days or 0),
        max_message_size=min(int(account.max_message_size),
                             int(cfg["POPACCOUNTS_MAX_MESSAGE_SIZE"])),
        max_messages_per_session=int(cfg["POPACCOUNTS_MAX_MESSAGES_PER_SESSION"]),
        accept_uidl_reset=bool(account.accept_uidl_reset),
    )


def _engine_sync() -> Any:
    # Imported late: services import cheaply, and tests may swap the engine module.
    from ..engine import sync

    return sync


def test_incoming(app: Flask, data: AccountInput, *, existing: Account | None = None
                  ) -> frozenset[str]:
    """Connect and authenticate with these settings (R6); returns the server's CAPA.

    With ``data.password`` None the stored secret of ``existing`` is used. Raises the
    engine's named errors (:mod:`flask_popaccounts.engine.errors`).
    """
    check_input(data)
    if data.password is None or data.password == "":
        if existing is None or existing.secret_enc is None:
            raise InvalidInput("A password is required")
        creds = credentials_for(app, existing)
    else:
        creds = Credentials(method=AuthMethod.PASSWORD, secret=data.password)
    server = ServerSpec(host=data.pop_host.strip(), port=int(data.pop_port),
                        security=Security(data.pop_security), username=data.pop_username)
    net = net_policy(app.config)
    caps: frozenset[str] = _engine_sync().check_login(server, creds, net=net)
    return caps


# -- account rows ------------------------------------------------------------------------


def _apply(account: Account, data: AccountInput, app: Flask | None) -> None:
    account.email = data.email.strip()
    account.name = data.name.strip() or data.email.strip()
    account.send_from = (data.send_from or data.email).strip()
    account.reply_to = (data.reply_to or "").strip()
    account.provider = data.provider or "other"
    account.pop_host = data.pop_host.strip()
    account.pop_port = int(data.pop_port)
    account.pop_security = Security(data.pop_security).value  # type: ignore[assignment]
    account.pop_username = data.pop_username
    account.delete_policy = DeletePolicy(data.delete_policy).value  # type: ignore[assignment]
    account.delete_after_days = max(0, int(data.delete_after_days or 0))
    minutes = int(data.fetch_interval_minutes)
    account.fetch_interval_minutes = clamp_interval(app, minutes) if app else minutes


def _unset_other_defaults(session: Session, owner_id: str, keep_id: int) -> None:
    session.execute(
        update(Account)
        .where(Account.owner_id == owner_id, Account.id != keep_id, Account.is_default.is_(True))
        .values(is_default=False)
        .execution_options(synchronize_session="fetch")
    )


def _app() -> Flask:
    from flask import current_app

    return current_app._get_current_object()  # type: ignore[attr-defined]


def create_account(session: Session, owner_id: str, data: AccountInput) -> Account:
    """Save a new account (after :func:`test_incoming` passed); commits.

    The password is encrypted; Inbox, Sent and Trash are created; the user's first
    account becomes the default, and a new default unsets the others.
    """
    check_input(data)
    if not data.password:
        raise InvalidInput("A password is required")
    app = _app()
    account = Account(owner_id=str(owner_id), auth_method=AuthMethod.PASSWORD.value,
                      status=AccountStatus.NEW.value, enabled=True,
                      max_message_size=int(app.config["POPACCOUNTS_MAX_MESSAGE_SIZE"]))
    _apply(account, data, app)
    account.secret_enc = get_state(app).secrets.encrypt(data.password)
    has_any = session.scalar(select(Account.id).where(Account.owner_id == str(owner_id)).limit(1))
    account.is_default = bool(data.is_default) or has_any is None
    account.next_due_at = _now()
    session.add(account)
    session.flush()
    ensure_default_folders(session, account)
    if account.is_default:
        _unset_other_defaults(session, account.owner_id, account.id)
    session.commit()
    log.info("account %s created for owner %s", account.id, owner_id)
    return account


def update_account(session: Session, account: Account, data: AccountInput) -> Account:
    """Save edited settings; commits.

    A new password is encrypted and, if the account was stopped for its credentials
    (R7) or needed attention, re-enables it: status back to NEW, failures cleared,
    due at once. Changing the server settings also clears a stopped state, since
    :func:`test_incoming` has just passed with them.
    """
    check_input(data)
    if data.password and value_of(account.auth_method) == AuthMethod.XOAUTH2.value:
        # The stored secret is an OAuth token set; a password would silently replace it.
        raise InvalidInput("This account signs in with its provider; use Authenticate instead "
                           "of a password")
    app = _app()
    server_changed = (
        account.pop_host != data.pop_host.strip() or int(account.pop_port) != int(data.pop_port)
        or value_of(account.pop_security) != Security(data.pop_security).value
        or account.pop_username != data.pop_username
    )
    _apply(account, data, app)
    if data.password:
        account.secret_enc = get_state(app).secrets.encrypt(data.password)
    stopped = value_of(account.status) in CREDENTIAL_STATUSES or (
        value_of(account.status) == AccountStatus.NEEDS_ATTENTION.value
    )
    if stopped and (data.password or server_changed):
        _reset_health(account)
    if data.is_default and not account.is_default:
        account.is_default = True
        session.flush()
        _unset_other_defaults(session, account.owner_id, account.id)
    session.commit()
    return account


def _resting_status(account: Account) -> AccountStatus:
    return AccountStatus.OK if account.last_success_at else AccountStatus.NEW


def _reset_health(account: Account) -> None:
    from ..signals import account_recovered

    account.status = _resting_status(account)
    account.last_error_code = None
    account.consecutive_failures = 0
    account.next_due_at = _now()
    try:
        account_recovered.send(_app(), account_id=account.id)
    except RuntimeError:  # no app context: nobody to tell
        pass


def delete_account(session: Session, account: Account) -> None:
    """Delete the account with all its stored mail, ledger and settings; commits.

    If it was the default, the owner's oldest remaining account becomes the default.
    """
    owner_id, was_default, account_id = account.owner_id, account.is_default, account.id
    session.expunge(account)
    delete_account_data(session, account_id)
    if was_default:
        next_id = session.scalar(
            select(Account.id).where(Account.owner_id == owner_id).order_by(Account.id).limit(1)
        )
        if next_id is not None:
            session.execute(update(Account).where(Account.id == next_id).values(is_default=True))
    session.commit()
    log.info("account %s deleted with its mail", account_id)


def set_default(session: Session, account: Account) -> None:
    """Make this the owner's default account (and no other); commits."""
    account.is_default = True
    session.flush()
    _unset_other_defaults(session, account.owner_id, account.id)
    session.commit()


def set_enabled(session: Session, account: Account, enabled: bool) -> None:
    """Switch automatic fetching on or off for this account; commits.

    Enabling does not clear a credentials problem: that takes a new password (R7).
    """
    account.enabled = bool(enabled)
    status = value_of(account.status)
    if enabled and (status == AccountStatus.DISABLED.value or (
            status == AccountStatus.NEEDS_ATTENTION.value
            and account.last_error_code != UIDLReset.code)):
        # e.g. a certificate the provider has since fixed: try again
        account.status = _resting_status(account)
        account.consecutive_failures = 0
    if enabled:
        account.next_due_at = _now()
    session.commit()


def confirm_uidl_reset(session: Session, account: Account) -> None:
    """The user confirmed that everything on the server may be imported again; commits.

    Only the next fetch accepts the reset (see ``RetrievalPolicy.accept_uidl_reset``).
    """
    account.accept_uidl_reset = True
    if value_of(account.status) == AccountStatus.NEEDS_ATTENTION.value:
        _reset_health(account)
    session.commit()


def get_owned_account(session: Session, owner_id: str, account_id: int) -> Account:
    """The account, only if it belongs to this owner; otherwise 404 (no existence leak)."""
    account = session.scalar(
        select(Account).where(Account.id == int(account_id), Account.owner_id == str(owner_id))
    )
    if account is None:
        raise NotFound()
    return account


def list_accounts(session: Session, owner_id: str) -> list[Account]:
    """The owner's accounts, default first, then by name."""
    return list(session.scalars(
        select(Account).where(Account.owner_id == str(owner_id))
        .order_by(Account.is_default.desc(), Account.name, Account.id)
    ))


def status_view(account: Account) -> StatusView:
    """The account's health in plain words (never the server's own text)."""
    status = value_of(account.status)
    if not account.enabled:
        return StatusView("Disabled", "Automatic fetching is switched off for this account. "
                          "Enable it to fetch mail again.", "info")
    code = account.last_error_code or ""
    err = error_for_code(code) if code else None
    if status == AccountStatus.NEEDS_PASSWORD.value:
        help_ = err.help if err else ""
        return StatusView("Needs your attention: update the password",
                          f"Fetching stopped: the server refused the password. {help_}".strip(),
                          "error")
    if status == AccountStatus.NEEDS_REAUTH.value:
        return StatusView("Needs your attention: re-authenticate",
                          "Fetching stopped: the provider no longer accepts this account's "
                          "authorization. Click Authenticate and sign in again.", "error")
    if status == AccountStatus.NEEDS_ATTENTION.value and err is not None:
        return StatusView(f"Needs your attention: {err.title}", err.help, "error")
    if status == AccountStatus.PAUSED_QUOTA.value:  # R19 (services.quota)
        return StatusView("Paused: your mail storage is full",
                          "Fetching is paused. The mail already fetched is kept and the rest "
                          "waits on the server; nothing was deleted there that is not stored "
                          "here. Free space on the Storage page (empty Trash, delete old "
                          "mail) and fetching resumes by itself.", "warning")
    if status == AccountStatus.RETRYING.value and err is not None:
        when = ""
        if account.next_due_at is not None:
            when = f" Next try at {account.next_due_at:%H:%M} UTC."
        return StatusView(f"Retrying: {err.title}", f"{err.help}{when}", "warning")
    if status == AccountStatus.OK.value:
        when = f"{account.last_success_at:%Y-%m-%d %H:%M} UTC" if account.last_success_at else ""
        return StatusView("Working", f"Last checked {when}." if when else "Working.", "ok")
    return StatusView("Waiting for the first fetch",
                      "The account is saved; its mail will be fetched shortly.", "info")
