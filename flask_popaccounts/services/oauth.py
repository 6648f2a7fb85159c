"""OAuth2 for Outlook.com and Office 365 (R12, R13): providers, sign-in, refresh, revoke.

The OAuth client is Authlib's (``authlib.integrations.requests_client.OAuth2Session``):
authorization code with PKCE (S256) and ``state`` (plus an OpenID ``nonce``), token
exchange and refresh. Nothing here builds an OAuth request by hand.

Providers come from presets (:data:`PRESETS`) merged with the host's configuration::

    POPACCOUNTS_MICROSOFT_CLIENT_ID / POPACCOUNTS_MICROSOFT_CLIENT_SECRET
        the host's app registration, used by both Microsoft presets
    POPACCOUNTS_MICROSOFT_OFFICE365_TENANT   "organizations" (default) or "common" / a tenant id
    POPACCOUNTS_OAUTH_PROVIDERS = {"outlook": {"authorize_url": ..., ...}, "google": {...}}
        per-provider overrides (or a whole new provider); any :class:`Provider` field

Token sets are stored, read and refreshed by :mod:`.credentials` (which calls
:func:`refresh_token_set` here); accounts are created and re-authorized by
:mod:`.accounts`. This module knows providers and the OAuth exchanges only.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from requests import RequestException

from ..config import net_policy
from ..engine.errors import (
    ConnectionFailed,
    PopAccountsError,
    ServerRefused,
    ServerUnavailable,
    TokenRejected,
)
from ..engine.types import AuthMethod, Credentials, Security, ServerSpec
from ..runtime import get_state

if TYPE_CHECKING:
    from flask import Flask
from ..i18n import N_

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
    title = N_("Sign-in with this provider is not set up")
    help = N_("The administrator of this site has not registered it with the provider yet, "
              "so these accounts cannot be added. Ask the administrator.")


class OAuthFailed(PopAccountsError):
    """The provider's sign-in did not complete (denied, invalid state, a wrong account)."""

    code = "oauth_failed"
    title = N_("Sign-in did not complete")
    help = N_("The provider did not grant access. Try again, and accept the requested access.")


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
    return Grant(token=_normal_token(app, token), email=email)


def _normal_token(app: Flask, token: dict[str, Any], old: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """The token set we store (no ID token); keeps the old refresh token if none came."""
    # The expiry follows the app's clock (Authlib stamps its own from the system time).
    expires_at = token.get("expires_at")
    if token.get("expires_in") is not None:
        expires_at = int(get_state(app).clock().timestamp()) + int(token["expires_in"])
    refresh = token.get("refresh_token") or (old or {}).get("refresh_token")
    return {"access_token": str(token["access_token"]),
            "refresh_token": str(refresh) if refresh else None,
            "expires_at": int(expires_at) if expires_at is not None else None,
            "token_type": str(token.get("token_type") or "Bearer"),
            "scope": str(token.get("scope") or "")}


# -- refresh and revocation -------------------------------------------------------------------


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
    return _normal_token(app, dict(new), token)


# -- the sign-in test ------------------------------------------------------------------------


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


def same_address(a: str, b: str) -> bool:
    return a.strip().lower() == b.strip().lower()


def revoke(app: Flask, provider_key: str, token: dict[str, Any]) -> bool:
    """Tell the provider to revoke this token set's refresh token (when it has a
    revocation endpoint); best effort, returns whether it answered OK."""
    try:
        provider = get_provider(app, provider_key)
    except OAuthNotConfigured:
        return False
    if not provider.revoke_url:
        return False
    value = token.get("refresh_token") or token.get("access_token")
    try:
        resp = _client(app, provider).revoke_token(
            provider.revoke_url, token=value, token_type_hint="refresh_token",  # noqa: S106
            timeout=_timeout(app))
    except (OAuthError, RequestException):
        return False
    return bool(resp.ok)
