"""Secrets at rest: passwords and OAuth tokens, encrypted with Fernet (MultiFernet).

``POPACCOUNTS_SECRET_KEYS`` holds one or more Fernet keys (a list, or one string with
keys separated by commas or whitespace); the first encrypts, all decrypt, so a new key
can be put in front and old tokens re-encrypted with ``flask popaccounts rotate-key``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger("flask_popaccounts")


class SecretKeyMissing(RuntimeError):
    """The application has no POPACCOUNTS_SECRET_KEYS and is not in debug/testing mode."""


class SecretUnreadable(RuntimeError):
    """A stored secret could not be decrypted with any configured key."""


def parse_keys(value: str | bytes | Iterable[str | bytes] | None) -> list[bytes]:
    if not value:
        return []
    if isinstance(value, bytes):
        value = value.decode("ascii")
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    return [k.encode("ascii") if isinstance(k, str) else k for k in value if k]


def derive_dev_key(app_secret: str | bytes) -> bytes:
    """A Fernet key derived from the app's SECRET_KEY: only for debug/testing runs."""
    if isinstance(app_secret, str):
        app_secret = app_secret.encode("utf-8")
    digest = hashlib.sha256(b"flask-popaccounts dev key\x00" + app_secret).digest()
    return base64.urlsafe_b64encode(digest)


class SecretBox:
    """Encrypts and decrypts account secrets; never logs or shows them."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise SecretKeyMissing("no encryption key configured")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode("utf-8"))

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode("utf-8")
        except InvalidToken as exc:
            raise SecretUnreadable(
                "a stored secret cannot be decrypted with the configured keys"
            ) from exc

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt with the primary (first) key."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken as exc:
            raise SecretUnreadable("a stored secret cannot be decrypted") from exc

    def __repr__(self) -> str:
        return "<SecretBox keys=hidden>"


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def secret_box(config: Mapping[str, Any], *, development: bool) -> SecretBox:
    """The secret box from ``POPACCOUNTS_SECRET_KEYS``; in development (debug, testing)
    without keys, a key derived from ``SECRET_KEY`` (with a warning)."""
    keys = parse_keys(config.get("POPACCOUNTS_SECRET_KEYS"))
    if not keys:
        if development:
            secret = config.get("SECRET_KEY")
            if not secret:
                raise SecretKeyMissing(
                    "Set POPACCOUNTS_SECRET_KEYS (or at least SECRET_KEY in debug/testing)."
                )
            log.warning("POPACCOUNTS_SECRET_KEYS not set: using a key derived from SECRET_KEY "
                        "(debug/testing only)")
            keys = [derive_dev_key(secret)]
        else:
            raise SecretKeyMissing(
                "POPACCOUNTS_SECRET_KEYS is required outside debug/testing: generate one with "
                "`flask popaccounts generate-key`, or python -c 'from cryptography.fernet "
                "import Fernet; print(Fernet.generate_key().decode())'"
            )
    return SecretBox(keys)
