"""``flask popaccounts ...`` through Flask's CLI test runner."""

from __future__ import annotations

from cryptography.fernet import Fernet
from sqlalchemy import inspect

from flask_popaccounts import get_state
from flask_popaccounts.storage.crypto import SecretBox, generate_key, parse_keys
from flask_popaccounts.storage.models import Account
from tests.support.flaskapp import dispose, make_app


def test_generate_key(app):
    result = app.test_cli_runner().invoke(args=["popaccounts", "generate-key"])
    assert result.exit_code == 0
    Fernet(result.output.strip().encode())  # a valid key


def test_db_upgrade_on_empty_database(tmp_path):
    app = make_app(tmp_path / "cli.db", create=False)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["popaccounts", "db", "current"])
    assert "base" in result.output
    result = runner.invoke(args=["popaccounts", "db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "0005_fetch_faults" in result.output
    with app.app_context():
        tables = inspect(get_state(app).engine).get_table_names()
    assert "popaccounts_account" in tables and "popaccounts_message_chunk" in tables
    dispose(app)


def test_rotate_key(tmp_path):
    old, new = generate_key(), generate_key()
    app = make_app(tmp_path / "rot.db", POPACCOUNTS_SECRET_KEYS=[old])
    with app.app_context(), get_state(app).session_factory() as s:
        acc = Account(owner_id="o", email="r@example.org", name="r", send_from="r@example.org",
                      pop_host="h", pop_port=995, pop_security="ssl", pop_username="r",
                      secret_enc=get_state(app).secrets.encrypt("hunter2"))
        s.add(acc)
        s.commit()
        aid = acc.id
    dispose(app)
    app = make_app(tmp_path / "rot.db", POPACCOUNTS_SECRET_KEYS=f"{new},{old}")
    result = app.test_cli_runner().invoke(args=["popaccounts", "rotate-key"])
    assert result.exit_code == 0 and "1 secret" in result.output
    assert "hunter2" not in result.output
    with app.app_context(), get_state(app).session_factory() as s:
        token = s.get(Account, aid).secret_enc
    assert SecretBox(parse_keys([new])).decrypt(token) == "hunter2"
    dispose(app)


def test_fetch_needs_a_choice(app):
    result = app.test_cli_runner().invoke(args=["popaccounts", "fetch"])
    assert result.exit_code != 0 and "--account" in result.output
    result = app.test_cli_runner().invoke(args=["popaccounts", "fetch", "--account", "999"])
    assert result.exit_code != 0 and "no account" in result.output
