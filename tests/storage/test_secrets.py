"""Secrets at rest: Fernet encryption, key rotation, refusing to start without a key."""

from __future__ import annotations

import pytest
from flask import Flask

from flask_popaccounts import PopAccounts
from flask_popaccounts.storage.crypto import (
    SecretBox,
    SecretKeyMissing,
    SecretUnreadable,
    generate_key,
    parse_keys,
)


def test_encrypt_decrypt_and_rotate():
    old, new = generate_key(), generate_key()
    box_old = SecretBox(parse_keys(old))
    token = box_old.encrypt("pässwörd")
    assert b"p\xc3\xa4ssw" not in token
    assert box_old.decrypt(token) == "pässwörd"
    both = SecretBox(parse_keys(f"{new}, {old}"))  # new key first; old still decrypts
    assert both.decrypt(token) == "pässwörd"
    rotated = both.rotate(token)
    assert SecretBox(parse_keys([new])).decrypt(rotated) == "pässwörd"
    with pytest.raises(SecretUnreadable):
        box_old.decrypt(rotated)
    assert "pässwörd" not in repr(both) and new not in repr(both)


def test_refuses_to_start_without_key_outside_debug(tmp_path, monkeypatch):
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    app = Flask("prod")
    app.config.update(SECRET_KEY="x", POPACCOUNTS_DATABASE_URI=f"sqlite:///{tmp_path}/p.db")
    with pytest.raises(SecretKeyMissing):
        PopAccounts(app)
    app2 = Flask("prod2")
    app2.config.update(SECRET_KEY="x", POPACCOUNTS_DATABASE_URI=f"sqlite:///{tmp_path}/p.db",
                       POPACCOUNTS_SECRET_KEYS=generate_key())
    PopAccounts(app2)  # with a key it starts
    app3 = Flask("dev")
    app3.config.update(TESTING=True, SECRET_KEY="x",
                       POPACCOUNTS_DATABASE_URI=f"sqlite:///{tmp_path}/p.db")
    PopAccounts(app3)  # testing: a key derived from SECRET_KEY
    with pytest.raises(RuntimeError):
        PopAccounts(app3)  # double registration refused
