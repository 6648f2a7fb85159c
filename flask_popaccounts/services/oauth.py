"""OAuth2 for Outlook.com and Office 365 (R12, R13): authorization, token storage, refresh.

The OAuth client is Authlib's (``authlib.integrations.requests_client.OAuth2Session``):
authorization code with PKCE (S256) and ``state`` (plus an OpenID ``nonce``), token
exchange and refresh. Nothing here builds an OAuth request by hand.

Providers come from presets (:data:`PRESETS`) merged with the host's configuration::

    POPACCOUNTS_MICROSOFT_CLIENT_ID / POPACCOUNTS_MICROSOFT_CLIENT_SECRET
        the host's app registration, used by both Microsoft presets
    POPACCOUNTS_MICROSOFT_OFFICE365_TENANT   "organizations" (default) or "common" / a tenant id
    POPACCOUNTS_OAUTH_PROVIDERS = {"outlook": {"authorize_url": ..., ...}, "google": {...}}
        per-provider overrides (or a whole new provider); any :class:`Provider` field

A token set is kept in ``Account.secret_enc`` like a password: Fernet-encrypted JSON
``{"access_token", "refresh_token", "expires_at", "token_type", "scope"}``. No schema
change: the expiry lives inside the encrypted set.

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

import base64
import json
import logging
import secrets
import time
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from requests import RequestException
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..config import net_policy
from ..engine.errors import (
    ConnectionFailed,
    InvalidInput,
    PopAccountsError,
    ServerRefused,
    ServerUnavailable,
    TokenRejected,
)
from ..engine.types import AuthMethod, Credentials, DeletePolicy, Security, ServerSpec
from ..runtime import get_state
from ..storage.mailstore import ensure_default_folders
from ..storage.models import Account, AccountStatus, value_of

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("flask_popaccounts.services.oauth")

#: What Outlook.com / Office 365 need for POP3 and SMTP with XOAUTH2, plus the address.
MICROSOFT_SCOPES = ("https://outlook.office.com/POP.AccessAsUser.All "
                    "https://outlook.office.com/SMTP.Send offline_access openid email")
_MS_LOGIN = "https://login.microsoftonline.com"

#: Provider errors meaning "this grant is gone": only the user can fix it (R13).
REAUTH_ERRORS = frozenset({"invalid_grant", "unauthorized_client", "access_denied",
                           "interaction_required", "consent_required", "login_required"})


class OAuthNotConfigured(PopAccountsError):
    """The host has not configured this provider (no client id)."""

    code = "oauth_not_configured"
    title = "Sign-in with this provider is not set up"
    help = ("The administrator of this site has not registered it with the provider yet, "
            "so these accounts cannot be added. Ask the administrator.")


class OAuthFailed(PopAccountsError):
    """The provider's sign-in did not complete (denied, invalid state, a wrong account)."""

    code = "oauth_failed"
    title = "Sign-in did not complete"
    help = "The provider did not grant access. Try again, and accept the requested access."


@dataclass(frozen=True)
class Provider:
    """One OAuth provider and the mail servers its tokens open."""

    key: str
    label: str
    authorize_url: str
    token_url: str
    scope: str
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    revoke_url: str | None = None
    pop_host: str = ""
    pop_port: int = 995
    pop_security: str = Security.SSL.value
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_security: str = "starttls"
    #: extra query parameters for the authorization request (e.g. ``prompt``)
    authorize_params: dict[str, str] = field(default_factory=dict)

    @property
    def configured(self) -> bool:
        return bool(self.client_id)


def _microsoft(key: str, label: str, tenant: str) -> Provider:
    return Provider(
        key=key, label=label,
        authorize_url=f"{_MS_LOGIN}/{tenant}/oauth2/v2.0/authorize",
        token_url=f"{_MS_LOGIN}/{tenant}/oauth2/v2.0/token",
        scope=MICROSOFT_SCOPES,
        pop_host="outlook.office365.com", pop_port=995, pop_security=Security.SSL.value,
        smtp_host="smtp.office365.com", smtp_port=587, smtp_security="starttls",
        authorize_params={"prompt": "select_account"},
    )


#: The built-in presets (Microsoft's endpoints; the host's client id fills them in).
PRESETS: dict[str, Provider] = {
    "outlook": _microsoft("outlook", "Outlook.com", "consumers"),
    "office365": _microsoft("office365", "Office 365", "organizations"),
}

_PROVIDER_FIELDS = {f.name for f in fields(Provider)}


def providers(app: Flask) -> dict[str, Provider]:
    """Every known provider, presets merged with the host's configuration."""
    cfg = app.config
    out: dict[str, Provider] = {}
    tenant = str(cfg.get("POPACCOUNTS_MICROSOFT_OFFICE365_TENANT") or "organizations")
    for key, preset in PRESETS.items():
        if key == "office365" and tenant != "organizations":
            preset = replace(preset,
                             authorize_url=f"{_MS_LOGIN}/{tenant}/oauth2/v2.0/authorize",
                             token_url=f"{_MS_LOGIN}/{tenant}/oauth2/v2.0/token")
        out[key] = replace(preset,
                           client_id=str(cfg.get("POPACCOUNTS_MICROSOFT_CLIENT_ID") or ""),
                           client_secret=str(cfg.get("POPACCOUNTS_MICROSOFT_CLIENT_SECRET")
                                             or ""))
    for key, over in (cfg.get("POPACCOUNTS_OAUTH_PROVIDERS") or {}).items():
        values = {k: v for k, v in dict(over).items() if k in _PROVIDER_FIELDS}
        if key in out:
            out[key] = replace(out[key], **values)
        else:
            values.setdefault("label", key)
            values.setdefault("scope", "openid email offline_access")
            out[key] = Provider(key=key, **values)
    return out


def get_provider(app: Flask, key: str) -> Provider:
    """The provider, or :class:`OAuthNotConfigured` when unknown or without a client id."""
    provider = providers(app).get(key)
    if provider is None or not provider.configured:
        raise OAuthNotConfigured(detail=key)
    return provider


def _client(app: Flask, provider: Provider, redirect_uri: str | None = None) -> OAuth2Session:
    return OAuth2Session(provider.client_id, provider.client_secret, scope=provider.scope,
                         redirect_uri=redirect_uri, code_challenge_method="S256")


def _timeout(app: Flask) -> float:
    return float(app.config.get("POPACCOUNTS_OAUTH_TIMEOUT") or 15)


# -- the authorization request and its answer -----------------------------------------------


@dataclass(frozen=True)
class AuthorizationRequest:
    """Where to send the user, and what the callback needs to check (keep it server-side
    or in the signed session; ``code_verifier`` never goes to the provider's page)."""

    url: str
    state: str
    code_verifier: str = field(repr=False)
    nonce: str = field(repr=False)


@dataclass(frozen=True)
class Grant:
    """What a completed sign-in gave us: the token set and the signed-in address."""

    token: dict[str, Any] = field(repr=False)
    email: str


def begin_authorization(app: Flask, provider_key: str, redirect_uri: str, *,
                        login_hint: str | None = None) -> AuthorizationRequest:
    """The provider's sign-in URL with PKCE (S256), ``state`` and ``nonce``."""
    provider = get_provider(app, provider_key)
    client = _client(app, provider, redirect_uri)
    verifier = generate_token(64)
    nonce = secrets.token_urlsafe(16)
    params = dict(provider.authorize_params)
    if login_hint:
        params["login_hint"] = login_hint
    url, state = client.create_authorization_url(provider.authorize_url,
                                                 code_verifier=verifier, nonce=nonce, **params)
    return AuthorizationRequest(url=url, state=state, code_verifier=verifier, nonce=nonce)


def _id_token_claims(id_token: str) -> dict[str, Any]:
    """The claims of an ID token received straight from the token endpoint over TLS.

    OpenID Connect Core 3.1.3.7: TLS server validation of the token endpoint may stand
    in for the signature check when the client received the ID token directly from it,
    which is the only way we receive one; ``aud`` and ``nonce`` are still checked.
    """
    try:
        payload = id_token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as exc:
        raise OAuthFailed("the provider sent an unreadable ID token") from exc
    if not isinstance(data, dict):
        raise OAuthFailed("the provider sent an unreadable ID token")
    return data


def _token_error(exc: Exception) -> PopAccountsError:
    """A named error for a failed token request."""
    if isinstance(exc, OAuthError):
        if exc.error in REAUTH_ERRORS:
            return TokenRejected(detail=f"{exc.error}: {exc.description or ''}".strip(": "))
        if exc.error == "invalid_client":
            return ServerRefused(detail="the provider refused this site's client credentials")
        return OAuthFailed(detail=str(exc.error))
    if isinstance(exc, RequestException):
        response = getattr(exc, "response", None)
        if response is not None and getattr(response, "status_code", 0) >= 500:
            return ServerUnavailable(detail="the provider's token service answered "
                                            f"{response.status_code}")
        return ConnectionFailed(detail="the provider's token service could not be reached")
    return OAuthFailed(detail=type(exc).__name__)


def complete_authorization(app: Flask, provider_key: str, redirect_uri: str, *,
                           authorization_response: str, state: str, code_verifier: str,
                           nonce: str) -> Grant:
    """Exchange the code (with the PKCE verifier) for tokens; check state, aud, nonce."""
    provider = get_provider(app, provider_key)
    client = _client(app, provider, redirect_uri)
    try:
        token = client.fetch_token(provider.token_url,
                                   authorization_response=authorization_response, state=state,
                                   code_verifier=code_verifier, timeout=_timeout(app))
    except (OAuthError, RequestException) as exc:
        err = _token_error(exc)
        if isinstance(err, TokenRejected):  # at sign-in, a refusal is just a failed sign-in
            raise OAuthFailed(detail=err.detail) from None
        raise err from None
    except Exception as exc:  # e.g. Authlib's MismatchingStateException (a CSRF attempt)
        raise OAuthFailed(detail=type(exc).__name__) from None
    claims = _id_token_claims(str(token.get("id_token") or ""))
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if provider.client_id not in auds or claims.get("nonce") != nonce:
        raise OAuthFailed("the ID token was not issued for this sign-in")
    email = str(claims.get("email") or claims.get("preferred_username") or "").strip()
    if "@" not in email:
        raise OAuthFailed("the provider did not tell us the account's address")
    return Grant(token=_normal_token(token), email=email)


def _normal_token(token: dict[str, Any], old: dict[str, Any] | None = None) -> dict[str, Any]:
    """The token set we store (no ID token); keeps the old refresh token if none came."""
    expires_at = token.get("expires_at")
    if expires_at is None and token.get("expires_in") is not None:
        expires_at = int(time.time()) + int(token["expires_in"])
    refresh = token.get("refresh_token") or (old or {}).get("refresh_token")
    return {"access_token": str(token["access_token"]),
            "refresh_token": str(refresh) if refresh else None,
            "expires_at": int(expires_at) if expires_at is not None else None,
            "token_type": str(token.get("token_type") or "Bearer"),
            "scope": str(token.get("scope") or "")}


# -- stored token sets ----------------------------------------------------------------------


def _encrypt(app: Flask, token: dict[str, Any]) -> bytes:
    return get_state(app).secrets.encrypt(json.dumps(token, separators=(",", ":")))


def _decrypt(app: Flask, secret_enc: bytes | None) -> dict[str, Any]:
    if secret_enc is None:
        raise InvalidInput("This account has no stored authorization")
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
    exp = _decrypt(app, account.secret_enc).get("expires_at")
    return datetime.fromtimestamp(int(exp), timezone.utc) if exp else None


def _is_fresh(app: Flask, token: dict[str, Any]) -> bool:
    exp = token.get("expires_at")
    if exp is None:
        return True  # no expiry known: use it; a rejection marks the account
    margin = float(app.config.get("POPACCOUNTS_OAUTH_REFRESH_MARGIN_SECONDS") or 0)
    return float(exp) - margin > time.time()


def refresh_token_set(app: Flask, provider: Provider, token: dict[str, Any]) -> dict[str, Any]:
    """Ask the provider for a new token set; raises TokenRejected on invalid_grant."""
    refresh = token.get("refresh_token")
    if not refresh:
        raise TokenRejected(detail="no refresh token stored")
    client = _client(app, provider)
    try:
        # Ask for what was granted (Microsoft wants the scopes again, a subset of the
        # original request; the token response lists the ones it granted).
        new = client.refresh_token(provider.token_url, refresh_token=str(refresh),
                                   scope=str(token.get("scope") or provider.scope),
                                   timeout=_timeout(app))
    except (OAuthError, RequestException) as exc:
        raise _token_error(exc) from None
    return _normal_token(dict(new), token)


def _lock_account_row(session: Session, account_id: int) -> bool:
    """Take the account's row for this transaction (see the module docstring)."""
    result = session.execute(
        update(Account).where(Account.id == account_id)
        .values(secret_enc=Account.secret_enc)
        .execution_options(synchronize_session=False))
    return bool(getattr(result, "rowcount", 0))


def ensure_fresh_credentials(app: Flask, account_id: int) -> Credentials:
    """The account's credentials, with an OAuth access token refreshed if it expires
    within ``POPACCOUNTS_OAUTH_REFRESH_MARGIN_SECONDS``.

    Needs only the app (no request context): the background fetch calls it through
    :func:`.accounts.credentials_for`. Password accounts get their password. On a
    refused refresh the account is marked NEEDS_REAUTH and :class:`TokenRejected` is
    raised; on an unreachable provider it backs off like a connection failure.
    """
    state = get_state(app)
    with state.session_factory() as session:
        row = session.execute(select(Account.secret_enc, Account.auth_method)
                              .where(Account.id == account_id)).one_or_none()
    if row is None:
        raise InvalidInput("This account no longer exists")
    if value_of(row.auth_method) != AuthMethod.XOAUTH2.value:
        if row.secret_enc is None:
            raise InvalidInput("This account has no stored password")
        return Credentials(method=AuthMethod(value_of(row.auth_method)),
                           secret=state.secrets.decrypt(row.secret_enc))
    token = _decrypt(app, row.secret_enc)
    if _is_fresh(app, token):
        return Credentials(method=AuthMethod.XOAUTH2, secret=str(token["access_token"]))

    with state.session_factory() as session:
        if not _lock_account_row(session, account_id):
            raise InvalidInput("This account no longer exists")
        account = session.get(Account, account_id, populate_existing=True)
        assert account is not None
        token = _decrypt(app, account.secret_enc)
        if _is_fresh(app, token):  # refreshed by someone else while we waited
            session.commit()
            return Credentials(method=AuthMethod.XOAUTH2, secret=str(token["access_token"]))
        if value_of(account.status) == AccountStatus.NEEDS_REAUTH.value:
            # refused while we waited: the provider is not asked again (R13)
            session.commit()
            raise TokenRejected(detail="re-authentication needed")
        try:
            provider = get_provider(app, account.provider)
            new = refresh_token_set(app, provider, token)
        except PopAccountsError as exc:
            _record_refresh_failure(app, session, account, exc)
            raise
        account.secret_enc = _encrypt(app, new)
        session.commit()
    log.info("refreshed the access token of account %s", account_id)
    return Credentials(method=AuthMethod.XOAUTH2, secret=str(new["access_token"]))


def _record_refresh_failure(app: Flask, session: Session, account: Account,
                            exc: PopAccountsError) -> None:
    """Record it like a failed fetch: NEEDS_REAUTH, back-off, or needs attention; commits."""
    from ..signals import account_disabled, account_failed
    from . import fetching

    log.warning("token refresh for account %s failed: %s%s", account.id, exc.code,
                f" ({exc.detail})" if exc.detail else "")
    account_id = account.id
    stopped = fetching.record_failure(app, session, account, exc,
                                      now=datetime.now(timezone.utc))
    account_failed.send(app, account_id=account_id, code=exc.code, transient=exc.transient)
    if stopped:
        account_disabled.send(app, account_id=account_id, code=exc.code)


# -- accounts ---------------------------------------------------------------------------------


def server_for(provider: Provider, email: str) -> ServerSpec:
    """The provider's POP3 server, with the signed-in address as the XOAUTH2 user."""
    return ServerSpec(host=provider.pop_host, port=int(provider.pop_port),
                      security=Security(provider.pop_security), username=email)


def test_login(app: Flask, provider_key: str, grant: Grant) -> frozenset[str]:
    """Sign in to the provider's POP3 server with the new token (R6); returns CAPA."""
    from ..engine import sync

    provider = get_provider(app, provider_key)
    creds = Credentials(method=AuthMethod.XOAUTH2, secret=str(grant.token["access_token"]))
    net = net_policy(app.config)
    caps: frozenset[str] = sync.check_login(server_for(provider, grant.email), creds, net=net)
    return caps


@dataclass
class OAuthAccountInput:
    """What the OAuth wizard collects besides the sign-in itself (R12)."""

    name: str = ""
    delete_policy: DeletePolicy = DeletePolicy.KEEP
    delete_after_days: int = 0
    is_default: bool = False


def create_account(app: Flask, session: Session, owner_id: str, provider_key: str,
                   grant: Grant, data: OAuthAccountInput) -> Account:
    """Save a new OAuth account after :func:`test_login` passed; commits."""
    from .accounts import _unset_other_defaults, clamp_interval

    provider = get_provider(app, provider_key)
    email = grant.email
    account = Account(
        owner_id=str(owner_id), email=email, name=(data.name or "").strip() or email,
        send_from=email, reply_to="", provider=provider.key,
        pop_host=provider.pop_host, pop_port=int(provider.pop_port),
        pop_security=Security(provider.pop_security).value, pop_username=email,
        auth_method=AuthMethod.XOAUTH2.value, status=AccountStatus.NEW.value, enabled=True,
        delete_policy=DeletePolicy(data.delete_policy).value,
        delete_after_days=(max(1, int(data.delete_after_days or 0))
                           if DeletePolicy(data.delete_policy) is DeletePolicy.AFTER_DAYS
                           else 0),
        fetch_interval_minutes=clamp_interval(
            app, int(app.config["POPACCOUNTS_DEFAULT_INTERVAL_MINUTES"])),
        max_message_size=int(app.config["POPACCOUNTS_MAX_MESSAGE_SIZE"]),
        next_due_at=datetime.now(timezone.utc),
    )
    account.secret_enc = _encrypt(app, grant.token)
    has_any = session.scalar(select(Account.id).where(Account.owner_id == str(owner_id)).limit(1))
    account.is_default = bool(data.is_default) or has_any is None
    session.add(account)
    session.flush()
    ensure_default_folders(session, account)
    if account.is_default:
        _unset_other_defaults(session, account.owner_id, account.id)
    session.commit()
    log.info("OAuth account %s (%s) created for owner %s", account.id, provider.key, owner_id)
    return account


def same_address(a: str, b: str) -> bool:
    return a.strip().lower() == b.strip().lower()


def authorize_account(app: Flask, session: Session, account: Account, provider_key: str,
                      grant: Grant) -> Account:
    """Store a new grant on an existing account and resume fetching (R13); commits.

    Used to re-authenticate an OAuth account and to switch a password account to
    OAuth (its stored password is replaced by the token set). The signed-in address
    must be the account's own (checked by the caller, see :func:`same_address`).
    """
    from .accounts import _reset_health

    provider = get_provider(app, provider_key)
    was_password = value_of(account.auth_method) != AuthMethod.XOAUTH2.value
    account.auth_method = AuthMethod.XOAUTH2.value  # type: ignore[assignment]
    account.provider = provider.key
    account.pop_username = grant.email
    if was_password and provider.pop_host:
        account.pop_host = provider.pop_host
        account.pop_port = int(provider.pop_port)
        account.pop_security = Security(provider.pop_security).value  # type: ignore[assignment]
    account.secret_enc = _encrypt(app, grant.token)
    account.enabled = True
    if value_of(account.status) not in (AccountStatus.OK.value, AccountStatus.NEW.value) or (
            account.consecutive_failures):
        _reset_health(account)
    account.next_due_at = datetime.now(timezone.utc)
    session.commit()
    log.info("account %s authorized with %s", account.id, provider.key)
    return account


def revoke(app: Flask, account: Account) -> bool:
    """Tell the provider to revoke the stored refresh token (when it has a revocation
    endpoint); best effort, returns whether it answered OK."""
    if value_of(account.auth_method) != AuthMethod.XOAUTH2.value:
        return False
    try:
        provider = get_provider(app, account.provider)
    except OAuthNotConfigured:
        return False
    if not provider.revoke_url:
        return False
    token = _decrypt(app, account.secret_enc)
    value = token.get("refresh_token") or token.get("access_token")
    try:
        resp = _client(app, provider).revoke_token(
            provider.revoke_url, token=value, token_type_hint="refresh_token",  # noqa: S106
            timeout=_timeout(app))
    except (OAuthError, RequestException):
        return False
    return bool(resp.ok)
