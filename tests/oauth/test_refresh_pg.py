"""Three processes refresh one account's token at the same instant on PostgreSQL: the
row lock lets exactly one of them ask the provider; the others wait, re-read and use
the token it stored (a second refresh with the rotated-away refresh token would be
refused and wrongly stop the account)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from sqlalchemy import create_engine

from flask_popaccounts import get_state
from flask_popaccounts.services import accounts, credentials, oauth
from flask_popaccounts.storage import migrations
from flask_popaccounts.storage.models import Account, AccountStatus
from tests.support.authserver import AuthServer
from tests.support.dovecot import Dovecot
from tests.support.flaskapp import dispose, make_app
from tests.support.waiting import LineReader

from .conftest import CLIENT_ID, CLIENT_SECRET, TEST_CLIENT_CALLBACK, MsUser, oauth_config

ROOT = Path(__file__).resolve().parents[2]



def provider_token(authsrv: AuthServer, user: MsUser) -> dict[str, object]:
    client = OAuth2Session(CLIENT_ID, CLIENT_SECRET, scope="openid email offline_access",
                           redirect_uri=TEST_CLIENT_CALLBACK, code_challenge_method="S256")
    verifier = generate_token(48)
    url, _ = client.create_authorization_url(authsrv.authorize_url, code_verifier=verifier)
    location = authsrv.consent(url, user.username, user.password)
    return dict(client.fetch_token(authsrv.token_url, authorization_response=location,
                                   code_verifier=verifier))


@pytest.mark.postgres
def test_three_processes_refresh_once(postgres: object, authsrv: AuthServer,
                                      oauth_dovecot: Dovecot, ms_user: MsUser) -> None:
    url = postgres.create_database()  # type: ignore[attr-defined]
    engine = create_engine(url)
    migrations.upgrade(engine)
    engine.dispose()
    config = oauth_config(authsrv, oauth_dovecot,
                          POPACCOUNTS_OAUTH_REFRESH_MARGIN_SECONDS=3000)
    config["POPACCOUNTS_ALLOWED_POP3_PORTS"] = list(config["POPACCOUNTS_ALLOWED_POP3_PORTS"])
    app = make_app(url, create=False, **config)
    try:
        authsrv.access_token_lifetime = 600  # inside the margin: "expiring" for everyone
        token = provider_token(authsrv, ms_user)
        authsrv.access_token_lifetime = 3600
        with app.test_request_context(), get_state(app).session_factory() as s:
            account = accounts.create_oauth_account(app, s, "1", "outlook", oauth.Grant(
                token={"access_token": token["access_token"],
                       "refresh_token": token["refresh_token"],
                       "expires_at": token["expires_at"], "scope": token["scope"]},
                email=ms_user.email),
                accounts.OAuthAccountInput())
            account_id = account.id

        before = authsrv.refreshes()
        authsrv.refresh_delay = 1.0  # a slow provider: the others wait or read meanwhile
        procs = [subprocess.Popen(
            [sys.executable, "-m", "tests.oauth.refresh_worker", url, json.dumps(config),
             str(account_id)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True) for _ in range(3)]
        readers = [LineReader(p.stdout) for p in procs if p.stdout is not None]
        for p, reader in zip(procs, readers, strict=True):
            assert reader.expect(lambda line: line == "READY", 60,
                                 f"refresh worker {p.pid} to connect") == "READY"
        for p in procs:  # all connected: go, all at once
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            p.wait(60)
        outputs = [reader.finish()[-1] for reader in readers]
        authsrv.refresh_delay = 0.0
        assert all(p.returncode == 0 for p in procs)
        assert not any(o.startswith("ERROR") for o in outputs), outputs
        assert len(set(outputs)) == 1 and outputs[0] != token["access_token"]
        assert authsrv.refreshes() == before + 1
        with get_state(app).session_factory() as s:
            stored = s.get(Account, account_id)
            assert stored is not None
            assert stored.status == AccountStatus.NEW.value
        assert credentials.ensure_fresh_credentials(app, account_id).secret == outputs[0]
    finally:
        dispose(app)
