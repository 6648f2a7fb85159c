"""A real OAuth2 / OpenID Connect authorization server for tests, built from Authlib's
server components and served by a werkzeug thread on 127.0.0.1.

It plays Microsoft's identity platform for the extension and Dovecot's token checks::

    GET,POST  /authorize    sign-in + consent form; authorization code + PKCE (S256 only)
    POST      /token        authorization_code and refresh_token grants (rotation: every
                            refresh issues a new refresh token and revokes the old one)
    POST      /revoke       RFC 7009 revocation (either token revokes the whole grant)
    POST      /introspect   RFC 7662 introspection for resource servers (Basic auth):
                            ``{"active": true, "username": <email>, ...}`` for Dovecot's
                            ``oauth2`` passdb and the aiosmtpd authenticator

Usage::

    with AuthServer() as srv:
        srv.add_user("ann", "ann-pw", "ann@example.test")
        srv.add_client("webmail", "webmail-secret", ["http://127.0.0.1:5000/cb"])
        srv.introspection_url            # http://<rs id>:<rs secret>@127.0.0.1:<port>/introspect
        location = srv.consent(authorize_url, "ann", "ann-pw")   # -> the redirect to the client

Everything lives in memory. ``access_token_lifetime`` may be changed at any time (new
tokens get it); counters record token requests and introspections so tests can prove
that an account stopped talking to the provider. ``clock`` (epoch seconds, default
``time.time``) is the server's now: tokens are issued and expire on it, so a test that
moves a fake clock on sees them expire at the provider too (Dovecot's introspection
answers ``active: false``) without waiting.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import requests
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, request
from joserfc.jwk import OctKey
from markupsafe import escape
from werkzeug.serving import WSGIRequestHandler, make_server


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # no access log in tests
        pass

# -- in-memory models (the Authlib mixin methods, nothing more) ----------------------------


@dataclass
class User:
    username: str
    password: str
    email: str

    def get_user_id(self) -> str:
        return self.username


@dataclass
class Client:
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    scope: str = ""
    resource_server: bool = False  #: may introspect tokens (Dovecot, the SMTP server)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str) -> str:
        if not scope:
            return ""
        return " ".join(s for s in scope.split() if not self.scope or s in self.scope.split())

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and not self.resource_server

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token") and not self.resource_server


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: User
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass
class Token:
    client_id: str
    user: User
    scope: str
    access_token: str
    refresh_token: str | None
    issued_at: float
    expires_in: int
    access_revoked: bool = False
    refresh_revoked: bool = False
    client: Client | None = None
    now: Callable[[], float] = field(default=time.time, repr=False)  #: the server's clock

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return self.now() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.access_revoked

    def get_user(self) -> User:
        return self.user

    def get_client(self) -> Client | None:
        return self.client


# -- the server ---------------------------------------------------------------------------


class AuthServer:
    """A running authorization server; see the module docstring."""

    def __init__(self, *, access_token_lifetime: int = 3600, start: bool = True) -> None:
        self.access_token_lifetime = access_token_lifetime
        self.clock: Callable[[], float] = time.time  #: now, in epoch seconds
        self.refresh_delay = 0.0  #: seconds the token endpoint takes to answer a refresh
        self.users: dict[str, User] = {}
        self.clients: dict[str, Client] = {}
        self.codes: dict[str, Code] = {}
        self.tokens: list[Token] = []
        self.lock = threading.RLock()
        #: what happened, for assertions
        self.token_requests: list[str] = []  #: grant_type of every /token call
        self.introspections: list[tuple[str, bool]] = []  #: (token, active)
        self.id_token_key = secrets.token_urlsafe(32)
        self.rs_client = self.add_client(f"rs-{secrets.token_hex(4)}", secrets.token_urlsafe(16),
                                         [], resource_server=True)
        self.app = self._make_app()
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True,
                                   request_handler=_QuietHandler)
        self.port = int(self._server.server_port)
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="test-authserver")
        if start:
            self._thread.start()

    # -- endpoints for clients ----------------------------------------------------------
    @property
    def authorize_url(self) -> str:
        return self.url + "/authorize"

    @property
    def token_url(self) -> str:
        return self.url + "/token"

    @property
    def revoke_url(self) -> str:
        return self.url + "/revoke"

    @property
    def introspect_url(self) -> str:
        return self.url + "/introspect"

    @property
    def introspection_url(self) -> str:
        """The introspection URL with the resource server's credentials (Dovecot's form)."""
        rs = self.rs_client
        return f"http://{rs.client_id}:{rs.client_secret}@127.0.0.1:{self.port}/introspect"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread.is_alive():
            self._thread.join(10)

    def __enter__(self) -> AuthServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- data -------------------------------------------------------------------------------
    def add_user(self, username: str, password: str, email: str) -> User:
        with self.lock:
            user = self.users[username] = User(username, password, email)
        return user

    def add_client(self, client_id: str, client_secret: str, redirect_uris: list[str], *,
                   scope: str = "", resource_server: bool = False) -> Client:
        with self.lock:
            client = self.clients[client_id] = Client(client_id, client_secret,
                                                      list(redirect_uris), scope,
                                                      resource_server)
        return client

    def tokens_of(self, username: str) -> list[Token]:
        with self.lock:
            return [t for t in self.tokens if t.user.username == username]

    def revoke_user(self, username: str) -> None:
        """Revoke every grant of a user (a password change or an admin's revocation)."""
        with self.lock:
            for t in self.tokens:
                if t.user.username == username:
                    t.access_revoked = t.refresh_revoked = True

    def valid_access_token(self, access_token: str) -> Token | None:
        with self.lock:
            for t in self.tokens:
                if t.access_token == access_token:
                    return None if (t.is_expired() or t.is_revoked()) else t
        return None

    def refreshes(self) -> int:
        return self.token_requests.count("refresh_token")

    # -- driving the consent page like a browser (for the test client) --------------------
    def consent(self, authorize_url: str, username: str, password: str, *,
                accept: bool = True) -> str:
        """Open the sign-in page, sign in and grant (or deny); returns the redirect
        location back to the client (with ``code``/``state``, or ``error``)."""
        with requests.Session() as http:
            page = http.get(authorize_url, timeout=10, allow_redirects=False)
            if page.status_code in (301, 302, 303):  # an error sent straight back
                return str(page.headers["Location"])
            assert page.status_code == 200, page.text
            resp = http.post(authorize_url, timeout=10, allow_redirects=False, data={
                "username": username, "password": password,
                "decision": "accept" if accept else "deny"})
            assert resp.status_code == 302, (resp.status_code, resp.text)
            return str(resp.headers["Location"])

    # -- the Flask app ----------------------------------------------------------------------
    def _make_app(self) -> Flask:
        srv = self
        app = Flask("test_authserver")
        app.config["SECRET_KEY"] = secrets.token_hex(16)

        def query_client(client_id: str) -> Client | None:
            return srv.clients.get(client_id)

        def save_token(token: dict[str, Any], req: Any) -> None:
            with srv.lock:
                srv.tokens.append(Token(
                    client_id=req.client.client_id, user=req.user,
                    scope=token.get("scope", ""), access_token=token["access_token"],
                    refresh_token=token.get("refresh_token"), issued_at=srv.clock(),
                    expires_in=int(token["expires_in"]), client=req.client,
                    now=lambda: srv.clock()))

        server = AuthorizationServer(app, query_client=query_client, save_token=save_token)

        def access_gen(**_: Any) -> str:
            return "at-" + secrets.token_urlsafe(30)

        def refresh_gen(**_: Any) -> str:
            return "rt-" + secrets.token_urlsafe(36)

        server.register_token_generator("default", BearerTokenGenerator(
            access_gen, refresh_gen,
            lambda client, grant_type: srv.access_token_lifetime))

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code: str, req: Any) -> None:
                data = req.payload.data
                with srv.lock:
                    srv.codes[code] = Code(
                        code=code, client_id=req.client.client_id,
                        redirect_uri=req.payload.redirect_uri, scope=req.scope or "",
                        user=req.user, code_challenge=data.get("code_challenge"),
                        code_challenge_method=data.get("code_challenge_method"),
                        nonce=data.get("nonce"))

            def query_authorization_code(self, code: str, client: Client) -> Code | None:
                item = srv.codes.get(code)
                if item is not None and item.client_id == client.client_id:
                    return item
                return None

            def delete_authorization_code(self, authorization_code: Code) -> None:
                with srv.lock:
                    srv.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: Code) -> User:
                return authorization_code.user

        class RefreshGrant(grants.RefreshTokenGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
            INCLUDE_NEW_REFRESH_TOKEN = True  # rotation, as Microsoft does

            def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
                with srv.lock:
                    for t in srv.tokens:
                        if t.refresh_token == refresh_token and not t.refresh_revoked:
                            return t
                return None

            def authenticate_user(self, credential: Token) -> User:
                return credential.user

            def revoke_old_credential(self, refresh_token: Token) -> None:
                with srv.lock:
                    refresh_token.refresh_revoked = True  # used once, never again

        class OpenID(OpenIDCode):
            def exists_nonce(self, nonce: str, req: Any) -> bool:
                return any(c.nonce == nonce for c in srv.codes.values())

            def resolve_client_private_key(self, client: Client) -> OctKey:
                return OctKey.import_key(srv.id_token_key)

            def get_client_algorithm(self, client: Client) -> str:
                return "HS256"

            def get_client_claims(self, client: Client) -> dict[str, Any]:
                return {"iss": srv.url, "aud": [client.client_id]}

            def get_encode_header(self, client: Client) -> dict[str, str]:
                return {"alg": "HS256"}

            def generate_user_info(self, user: User, scope: str) -> UserInfo:
                info = UserInfo(sub=user.username, preferred_username=user.email)
                if "email" in scope.split():
                    info["email"] = user.email
                return info

        def find_token(token_string: str, hint: str | None) -> Token | None:
            with srv.lock:
                for t in srv.tokens:
                    if hint != "refresh_token" and t.access_token == token_string:
                        return t
                    if hint != "access_token" and t.refresh_token == token_string:
                        return t
            return None

        class Revocation(RevocationEndpoint):
            def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
                return find_token(token_string, token_type_hint)

            def revoke_token(self, token: Token, req: Any) -> None:
                with srv.lock:
                    token.access_revoked = token.refresh_revoked = True

        class Introspection(IntrospectionEndpoint):
            def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
                return find_token(token_string, token_type_hint)

            def check_permission(self, token: Token, client: Client, req: Any) -> bool:
                return client.resource_server

            def introspect_token(self, token: Token) -> dict[str, Any]:
                return {"active": True, "username": token.user.email,
                        "client_id": token.client_id, "scope": token.scope,
                        "token_type": "Bearer",
                        "exp": int(token.issued_at + token.expires_in),
                        "sub": token.user.username}

        server.register_grant(CodeGrant, [CodeChallenge(required=True), OpenID()])
        server.register_grant(RefreshGrant)
        server.register_endpoint(Revocation)
        server.register_endpoint(Introspection)

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize() -> Any:
            if request.method == "GET":
                try:
                    server.get_consent_grant(end_user=None)
                except Exception as exc:  # an invalid request: explain, as a provider does
                    return f"<p>Invalid request: {escape(str(exc))}</p>", 400
                return _CONSENT_PAGE.format(
                    action=escape(request.full_path),
                    scope=escape(request.args.get("scope", "")),
                    hint=escape(request.args.get("login_hint", "")))
            name = request.form.get("username", "")
            user = srv.users.get(name) or next(
                (u for u in srv.users.values() if u.email.lower() == name.lower()), None)
            ok = (user is not None and request.form.get("decision") == "accept"
                  and secrets.compare_digest(user.password, request.form.get("password", "")))
            if request.form.get("decision") == "accept" and not ok:
                return _CONSENT_PAGE.format(action=escape(request.full_path), scope="",
                                            hint="") + "<p>Wrong password</p>", 401
            grant = server.get_consent_grant(end_user=user if ok else None)
            return server.create_authorization_response(grant=grant,
                                                        grant_user=user if ok else None)

        @app.route("/token", methods=["POST"])
        def token() -> Any:
            srv.token_requests.append(request.form.get("grant_type", ""))
            if srv.refresh_delay and request.form.get("grant_type") == "refresh_token":
                time.sleep(srv.refresh_delay)  # a slow provider widens any race window
            return server.create_token_response()

        @app.route("/revoke", methods=["POST"])
        def revoke() -> Any:
            return server.create_endpoint_response(RevocationEndpoint.ENDPOINT_NAME)

        @app.route("/introspect", methods=["POST"])
        def introspect() -> Any:
            resp = server.create_endpoint_response(IntrospectionEndpoint.ENDPOINT_NAME)
            body = resp.get_json(silent=True) or {}
            srv.introspections.append((request.form.get("token", ""), bool(body.get("active"))))
            return resp

        return app

    def authorize_link(self, client_id: str, redirect_uri: str, **params: str) -> str:
        """A plain authorization URL (for tests of the server itself)."""
        return self.authorize_url + "?" + urlencode(
            {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
             **params})


_CONSENT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in - Test identity provider</title></head>
<body><main>
<h1>Sign in</h1>
<p>The application asks for: <code>{scope}</code></p>
<form method="post" action="{action}">
  <p><label for="username">Username</label> <input id="username" name="username" value="{hint}"></p>
  <p><label for="password">Password</label>
     <input id="password" name="password" type="password"></p>
  <p><button name="decision" value="accept">Accept</button>
     <button name="decision" value="deny">Cancel</button></p>
</form>
</main></body></html>
"""
