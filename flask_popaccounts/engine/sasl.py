"""The SASL client messages POP3 and SMTP both send (before base64), in one place."""

from __future__ import annotations


def plain_response(username: str, secret: str) -> bytes:
    """SASL PLAIN (RFC 4616): no authorization identity, then user and password."""
    return b"\0" + username.encode("utf-8") + b"\0" + secret.encode("utf-8")


def xoauth2_response(username: str, token: str) -> bytes:
    """Google's and Microsoft's XOAUTH2: the user and a bearer token, ^A-separated."""
    return f"user={username}\x01auth=Bearer {token}\x01\x01".encode()
