"""The secrets an account signs in with: encrypted at rest, decrypted only here.

A password account keeps its password in ``Account.secret_enc``; an OAuth account keeps
a token set there, Fernet-encrypted JSON ``{"access_token", "refresh_token",
"expires_at", "token_type", "scope"}`` (no schema change: the expiry lives inside the
encrypted set). :func:`credentials_for` is the one way to get what the engine signs in
with: the password, or an access token refreshed when it expires within
``POPACCOUNTS_OAUTH_REFRESH_MARGIN_SECONDS`` of the app's clock.

Refresh (:func:`ensure_fresh_credentials`) runs wherever credentials are needed (the
background fetch has no request context: it only needs the app). It is serialized per
account across threads *and processes*: the refresher first writes the account row
(``UPDATE ... SET secret_enc = secret_enc``), which holds a row lock on PostgreSQL (the
database write lock on SQLite) until its commit; whoever waited then re-reads the
token set, finds it fresh and does not refresh again. This matters because the
provider rotates refresh tokens: a second refresh with the old one would be refused
(``invalid_grant``) and wrongly stop the account. The rotated refresh token is stored
every time, in the same transaction.

When the provider refuses the refresh token (``invalid_grant``: revoked, expired,
password changed, consent withdrawn) the account is marked NEEDS_REAUTH and no
further automatic login or refresh is attempted until the user authenticates again.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..engine.errors import InvalidInput, PopAccountsError, TokenRejected
from ..engine.types import AuthMethod, Credentials
from ..i18n import gettext as _
from ..runtime import get_state
from ..signals import account_disabled, account_failed
from ..signals import send as send_signal
from ..storage.models import Account, AccountStatus, value_of
from . import health, oauth

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("flask_popaccounts.services.credentials")


def encrypt_password(app: Flask, password: str) -> bytes:
    """A password as stored (``secret_enc``)."""
    return get_state(app).secrets.encrypt(password)


def encrypt_token(app: Flask, token: dict[str, Any]) -> bytes:
    """An OAuth token set as stored (``secret_enc``)."""
    return get_state(app).secrets.encrypt(json.dumps(token, separators=(",", ":")))


def read_token(app: Flask, secret_enc: bytes | None) -> dict[str, Any]:
    """The stored token set of an OAuth account (an old bare token still reads)."""
    if secret_enc is None:
        raise InvalidInput(_("This account has no stored authorization."))
    plain = get_state(app).secrets.decrypt(secret_enc)
    try:
        data = json.loads(plain)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not data.get("access_token"):
        return {"access_token": plain, "refresh_token": None, "expires_at": None}
    return data


def token_expires_at(app: Flask, account: Account) -> datetime | None:
    """When the stored access token expires (for pages and tests), or None."""
    if value_of(account.auth_method) != AuthMethod.XOAUTH2.value:
        return None
    exp = read_token(app, account.secret_enc).get("expires_at")
    return datetime.fromtimestamp(int(exp), timezone.utc) if exp else None


def _is_fresh(app: Flask, token: dict[str, Any]) -> bool:
    exp = token.get("expires_at")
    if exp is None:
        return True  # no expiry known: use it; a rejection marks the account
    margin = float(app.config.get("POPACCOUNTS_OAUTH_REFRESH_MARGIN_SECONDS") or 0)
    return float(exp) - margin > get_state(app).clock().timestamp()


def credentials_for(app: Flask, account: Account) -> Credentials:
    """What the engine signs in with for this account (never store or log the result).

    OAuth accounts get an access token, refreshed first if it expires soon.
    """
    if account.secret_enc is None:
        raise InvalidInput(_("This account has no stored password."))
    if value_of(account.auth_method) == AuthMethod.XOAUTH2.value:
        return ensure_fresh_credentials(app, account.id)
    return Credentials(method=AuthMethod(value_of(account.auth_method)),
                       secret=get_state(app).secrets.decrypt(account.secret_enc))


def _lock_account_row(session: Session, account_id: int) -> bool:
    """Take the account's row for this transaction (see the module docstring)."""
    result = session.execute(
        update(Account).where(Account.id == account_id)
        .values(secret_enc=Account.secret_enc)
        .execution_options(synchronize_session=False))
    return bool(getattr(result, "rowcount", 0))


def ensure_fresh_credentials(app: Flask, account_id: int) -> Credentials:
    """The account's credentials read afresh from its row, with an OAuth access token
    refreshed if it expires within ``POPACCOUNTS_OAUTH_REFRESH_MARGIN_SECONDS``.

    Needs only the app (no request context). Password accounts get their password. On
    a refused refresh the account is marked NEEDS_REAUTH and :class:`TokenRejected` is
    raised; on an unreachable provider it backs off like a connection failure.
    """
    state = get_state(app)
    with state.session_factory() as session:
        row = session.execute(select(Account.secret_enc, Account.auth_method)
                              .where(Account.id == account_id)).one_or_none()
    if row is None:
        raise InvalidInput(_("This account no longer exists."))
    if value_of(row.auth_method) != AuthMethod.XOAUTH2.value:
        if row.secret_enc is None:
            raise InvalidInput(_("This account has no stored password."))
        return Credentials(method=AuthMethod(value_of(row.auth_method)),
                           secret=state.secrets.decrypt(row.secret_enc))
    token = read_token(app, row.secret_enc)
    if not _is_fresh(app, token):
        token = _refresh_locked(app, account_id)
    return Credentials(method=AuthMethod.XOAUTH2, secret=str(token["access_token"]))


def session_credentials(app: Flask, account_id: int, current: Credentials) -> Credentials:
    """What the next POP3 session of a running fetch signs in with.

    A password does not change during a fetch; an OAuth token is read afresh and
    refreshed when it expires within the margin, so a sync of many sessions never
    logs in with a token past its lifetime.
    """
    if current.method is not AuthMethod.XOAUTH2:
        return current
    return ensure_fresh_credentials(app, account_id)


def refresh_refused(app: Flask, account_id: int, refused: Credentials) -> Credentials:
    """The server refused this access token although it looked valid (revoked early,
    the provider's own clock): refresh once, whatever its expiry says, and return the
    new one. If another process replaced the token meanwhile, that one is used.
    A refused refresh marks the account NEEDS_REAUTH (and raises TokenRejected)."""
    token = _refresh_locked(app, account_id, refused=refused.secret)
    return Credentials(method=AuthMethod.XOAUTH2, secret=str(token["access_token"]))


def already_recorded(exc: BaseException) -> bool:
    """Whether this error's outcome was already recorded on the account (a refused
    refresh: :func:`_record_refresh_failure`), so the fetch must not record it twice."""
    return bool(getattr(exc, "popaccounts_recorded", False))


def _refresh_locked(app: Flask, account_id: int, *, refused: str | None = None
                    ) -> dict[str, Any]:
    """Refresh the account's token set under its row lock; the fresh set.

    ``refused``: the access token the server just refused; it is replaced even when its
    expiry says it is fresh (unless someone else already replaced it).
    """
    with get_state(app).session_factory() as session:
        if not _lock_account_row(session, account_id):
            raise InvalidInput(_("This account no longer exists."))
        account = session.get(Account, account_id, populate_existing=True)
        assert account is not None
        token = read_token(app, account.secret_enc)
        replaced = refused is not None and token.get("access_token") != refused
        if replaced or (refused is None and _is_fresh(app, token)):
            session.commit()  # refreshed by someone else while we waited
            return token
        if value_of(account.status) == AccountStatus.NEEDS_REAUTH.value:
            # refused while we waited: the provider is not asked again (R13)
            session.commit()
            raise TokenRejected(detail="re-authentication needed")
        try:
            provider = oauth.get_provider(app, account.provider)
            new = oauth.refresh_token_set(app, provider, token)
        except PopAccountsError as exc:
            _record_refresh_failure(app, session, account, exc)
            raise
        account.secret_enc = encrypt_token(app, new)
        session.commit()
    log.info("refreshed the access token of account %s", account_id)
    return new


def _record_refresh_failure(app: Flask, session: Session, account: Account,
                            exc: PopAccountsError) -> None:
    """Record it like a failed fetch: NEEDS_REAUTH, back-off, or needs attention; commits."""
    log.warning("token refresh for account %s failed: %s%s", account.id, exc.code,
                f" ({exc.detail})" if exc.detail else "")
    account_id = account.id
    stopped = health.record_failure(app, session, account, exc, now=get_state(app).clock())
    exc.popaccounts_recorded = True  # type: ignore[attr-defined]
    send_signal(account_failed, app, account_id=account_id, code=exc.code, transient=exc.transient)
    if stopped:
        send_signal(account_disabled, app, account_id=account_id, code=exc.code)


def revoke_grant(app: Flask, account: Account) -> bool:
    """Ask the provider to revoke an OAuth account's grant (best effort); whether it did."""
    if value_of(account.auth_method) != AuthMethod.XOAUTH2.value:
        return False
    return oauth.revoke(app, account.provider, read_token(app, account.secret_enc))
