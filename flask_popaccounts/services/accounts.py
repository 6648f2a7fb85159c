"""Account management: test the incoming server, create, update, delete, re-authorize.

The only place where account rows meet the engine's login check. Every account, password
or OAuth, is created by one path (:func:`_insert_account`: the host's limits, the
first account as default, Inbox/Sent/Trash, due at once). Every function that changes
data commits its own transaction; none of them ever returns or logs a secret.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from werkzeug.exceptions import NotFound

from ..config import net_policy
from ..engine.errors import AuthenticationFailed, InvalidInput, UIDLReset
from ..engine.types import (
    AuthMethod,
    Credentials,
    DeletePolicy,
    RetrievalPolicy,
    Security,
    ServerSpec,
)
from ..i18n import gettext as _
from ..runtime import get_state
from ..storage.mailbox import delete_account_data, ensure_default_folders
from ..storage.models import Account, AccountStatus, value_of
from . import credentials, health, oauth, retrieval, scheduling
from .account_input import (
    AccountInput,
    AddressInUse,
    FieldError,
    OAuthAccountInput,
    PasswordNeededForNewServer,
    ServerFixedByProvider,
    _destination_changed,
    _server_changed,
    _unique_address,
    check_address_free,
    check_input,
    clamp_interval,
    existing_with_address,
)

__all__ = ["AccountInput", "AddressInUse", "FieldError", "OAuthAccountInput",
           "PasswordNeededForNewServer", "ServerFixedByProvider", "check_address_free",
           "check_input", "clamp_interval", "create_account", "existing_with_address",
           "update_account"]

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("flask_popaccounts.services.accounts")


# -- engine inputs -----------------------------------------------------------------------


def server_spec_for(account: Account) -> ServerSpec:
    """Where and how to connect for this account."""
    return ServerSpec(
        host=account.pop_host,
        port=int(account.pop_port),
        security=Security(account.pop_security),
        username=account.pop_username,
    )


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
        mark_listing_seen=bool(account.import_only_new),  # the first import "from now on"
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
    if existing is not None and _destination_changed(existing, data) and (
            value_of(existing.auth_method) == AuthMethod.XOAUTH2.value):
        raise ServerFixedByProvider(field="pop_host")
    if data.password is None or data.password == "":
        if existing is None or existing.secret_enc is None:
            raise InvalidInput(_("A password is required."))
        if _destination_changed(existing, data):
            # Never hand the stored password to a server it was not entered for.
            raise PasswordNeededForNewServer(field="password")
        creds = credentials.credentials_for(app, existing)
    else:
        creds = Credentials(method=AuthMethod.PASSWORD, secret=data.password)
    server = ServerSpec(host=data.pop_host.strip(), port=int(data.pop_port),
                        security=Security(data.pop_security), username=data.pop_username)
    try:
        caps: frozenset[str] = _engine_sync().check_login(server, creds,
                                                          net=net_policy(app.config))
    except AuthenticationFailed as exc:  # Gmail's refusal in Gmail's words (app passwords)
        exc.help = type(exc).help_for(data.provider)
        raise
    return caps


# -- account rows ------------------------------------------------------------------------


def _apply(app: Flask, account: Account, data: AccountInput) -> None:
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
    account.fetch_interval_minutes = clamp_interval(app, int(data.fetch_interval_minutes))


def _unset_other_defaults(session: Session, owner_id: str, keep_id: int) -> None:
    session.execute(
        update(Account)
        .where(Account.owner_id == owner_id, Account.id != keep_id, Account.is_default.is_(True))
        .values(is_default=False)
        .execution_options(synchronize_session="fetch")
    )


def _insert_account(app: Flask, session: Session, account: Account, *,
                    want_default: bool) -> Account:
    """Save a new account (the one creation path): due at once, with Inbox, Sent and
    Trash; the owner's first account is the default, a new default unsets the others;
    commits."""
    account.status = AccountStatus.NEW.value  # type: ignore[assignment]
    account.enabled = True
    account.max_message_size = int(app.config["POPACCOUNTS_MAX_MESSAGE_SIZE"])
    account.next_due_at = get_state(app).clock()
    has_any = session.scalar(select(Account.id).where(Account.owner_id == account.owner_id)
                             .limit(1))
    account.is_default = bool(want_default) or has_any is None
    with _unique_address(session, account.owner_id, account.email, None):
        session.add(account)
        session.flush()
        ensure_default_folders(session, account)
        retrieval.prepare_folder(session, account)
        if account.is_default:
            _unset_other_defaults(session, account.owner_id, account.id)
        session.commit()
    log.info("account %s created for owner %s", account.id, account.owner_id)
    scheduling.dispatch_soon(app)  # its first fetch starts now, not at the next tick
    return account


def create_account(app: Flask, session: Session, owner_id: str, data: AccountInput) -> Account:
    """Save a new password account (after :func:`test_incoming` passed); commits.

    Raises :class:`AddressInUse` when the owner has an account with this address.
    """
    check_input(data)
    if not data.password:
        raise InvalidInput(_("A password is required."))
    check_address_free(session, owner_id, data.email)
    account = Account(owner_id=str(owner_id), auth_method=AuthMethod.PASSWORD.value)
    _apply(app, account, data)
    retrieval.apply_settings(session, account, data, new=True)
    account.secret_enc = credentials.encrypt_password(app, data.password)
    return _insert_account(app, session, account, want_default=data.is_default)


def create_oauth_account(app: Flask, session: Session, owner_id: str, provider_key: str,
                         grant: oauth.Grant, data: OAuthAccountInput) -> Account:
    """Save a new OAuth account after :func:`.oauth.test_login` passed; commits."""
    provider = oauth.get_provider(app, provider_key)
    email = grant.email
    check_address_free(session, owner_id, email)
    policy = DeletePolicy(data.delete_policy)
    account = Account(
        owner_id=str(owner_id), email=email, name=(data.name or "").strip() or email,
        send_from=email, reply_to="", provider=provider.key,
        pop_host=provider.pop_host, pop_port=int(provider.pop_port),
        pop_security=Security(provider.pop_security).value, pop_username=email,
        auth_method=AuthMethod.XOAUTH2.value, delete_policy=policy.value,
        delete_after_days=(max(1, int(data.delete_after_days or 0))
                           if policy is DeletePolicy.AFTER_DAYS else 0),
        fetch_interval_minutes=clamp_interval(
            app, int(app.config["POPACCOUNTS_DEFAULT_INTERVAL_MINUTES"])),
    )
    retrieval.apply_settings(session, account, data, new=True)
    account.secret_enc = credentials.encrypt_token(app, grant.token)
    return _insert_account(app, session, account, want_default=data.is_default)


def update_account(app: Flask, session: Session, account: Account, data: AccountInput
                   ) -> Account:
    """Save edited settings; commits.

    A new password is encrypted and, if the account was stopped for its credentials
    (R7) or needed attention, re-enables it: status back to NEW, failures cleared,
    due at once. Changing the server settings also clears a stopped state, since
    :func:`test_incoming` has just passed with them.
    """
    check_input(data)
    if data.password and value_of(account.auth_method) == AuthMethod.XOAUTH2.value:
        # The stored secret is an OAuth token set; a password would silently replace it.
        raise InvalidInput(_("This account signs in with its provider; use Authenticate "
                             "instead of a password."))
    server_changed = _server_changed(account, data)
    moved = _destination_changed(account, data)
    if moved and value_of(account.auth_method) == AuthMethod.XOAUTH2.value:
        raise ServerFixedByProvider(field="pop_host")
    if moved and not data.password:
        raise PasswordNeededForNewServer(field="password")
    check_address_free(session, account.owner_id, data.email, account.id)
    retrieval.apply_settings(session, account, data, new=False)  # (a 404 before any change)
    _apply(app, account, data)
    if data.password:
        account.secret_enc = credentials.encrypt_password(app, data.password)
    stopped = value_of(account.status) in health.CREDENTIAL_STATUSES or (
        value_of(account.status) == AccountStatus.NEEDS_ATTENTION.value
    )
    if stopped and (data.password or server_changed):
        health.reset_health(app, account, now=get_state(app).clock())
    with _unique_address(session, account.owner_id, account.email, account.id):
        retrieval.prepare_folder(session, account)  # (flushes the edit)
        if data.is_default and not account.is_default:
            account.is_default = True
            session.flush()
            _unset_other_defaults(session, account.owner_id, account.id)
        session.commit()
    return account


def authorize_account(app: Flask, session: Session, account: Account, provider_key: str,
                      grant: oauth.Grant) -> Account:
    """Store a new grant on an existing account and resume fetching (R13); commits.

    Used to re-authenticate an OAuth account and to switch a password account to
    OAuth (its stored password is replaced by the token set). The signed-in address
    must be the account's own (checked by the caller, see :func:`.oauth.same_address`).
    """
    provider = oauth.get_provider(app, provider_key)
    was_password = value_of(account.auth_method) != AuthMethod.XOAUTH2.value
    account.auth_method = AuthMethod.XOAUTH2.value  # type: ignore[assignment]
    account.provider = provider.key
    account.pop_username = grant.email
    if was_password and provider.pop_host:
        account.pop_host = provider.pop_host
        account.pop_port = int(provider.pop_port)
        account.pop_security = Security(provider.pop_security).value  # type: ignore[assignment]
    account.secret_enc = credentials.encrypt_token(app, grant.token)
    account.enabled = True
    now = get_state(app).clock()
    if value_of(account.status) not in (AccountStatus.OK.value, AccountStatus.NEW.value) or (
            account.consecutive_failures):
        health.reset_health(app, account, now=now)
    account.next_due_at = now
    session.commit()
    log.info("account %s authorized with %s", account.id, provider.key)
    scheduling.dispatch_soon(app)
    return account


def delete_account(app: Flask, session: Session, account: Account) -> None:
    """Delete the account with all its stored mail, ledger and settings; commits.

    An OAuth grant is revoked at the provider first (best effort: the grant must not
    outlive the account). If it was the default, the owner's oldest remaining account
    becomes the default.
    """
    credentials.revoke_grant(app, account)
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


def set_enabled(app: Flask, session: Session, account: Account, enabled: bool) -> None:
    """Switch automatic fetching on or off for this account; commits.

    Enabling does not clear a credentials problem: that takes a new password (R7).
    """
    account.enabled = bool(enabled)
    status = value_of(account.status)
    if enabled and (status == AccountStatus.DISABLED.value or (
            status == AccountStatus.NEEDS_ATTENTION.value
            and account.last_error_code != UIDLReset.code)):
        # e.g. a certificate the provider has since fixed: try again
        account.status = health.resting_status(account)
        account.consecutive_failures = 0
    if enabled:
        account.next_due_at = get_state(app).clock()
    session.commit()
    if enabled:
        scheduling.dispatch_soon(app)


def confirm_uidl_reset(app: Flask, session: Session, account: Account) -> None:
    """The user confirmed that everything on the server may be imported again; commits.

    Only the next fetch accepts the reset (see ``RetrievalPolicy.accept_uidl_reset``).
    """
    account.accept_uidl_reset = True
    if value_of(account.status) == AccountStatus.NEEDS_ATTENTION.value:
        health.reset_health(app, account, now=get_state(app).clock())
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
