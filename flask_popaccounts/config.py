"""Configuration: every ``POPACCOUNTS_*`` key with its default, and typed views of them.

A leaf module: it imports only the engine's plain types. :data:`DEFAULTS` is what
``init_app`` fills into ``app.config`` (the README's table documents each key, and a
test keeps the two equal); :func:`net_policy` turns a config into the engine's
:class:`~.engine.types.NetPolicy` for one kind of server.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from .engine.types import NetPolicy

#: Every config key with its default. The README documents each one.
DEFAULTS: dict[str, Any] = {
    # Storage
    "POPACCOUNTS_DATABASE_URI": None,  # used only when no db= is given
    "POPACCOUNTS_SECRET_KEYS": None,  # Fernet keys, first one encrypts
    "POPACCOUNTS_QUOTA_BYTES": None,  # per-user storage quota (None: unlimited)
    "POPACCOUNTS_SQLITE_BUSY_TIMEOUT": 30.0,  # SQLite: seconds a writer waits for the lock
    # Network policy
    "POPACCOUNTS_ALLOW_PRIVATE_HOSTS": False,  # allow loopback/private servers (tests, on-premise)
    "POPACCOUNTS_ALLOWED_POP3_PORTS": (110, 995),
    "POPACCOUNTS_ALLOWED_SMTP_PORTS": (465, 587),
    "POPACCOUNTS_ALLOW_PLAINTEXT": False,  # allow "Plain" (no TLS) connections
    "POPACCOUNTS_CA_FILE": None,  # extra CA bundle on top of the system trust store
    "POPACCOUNTS_CONNECT_TIMEOUT": 15.0,
    "POPACCOUNTS_READ_TIMEOUT": 60.0,
    "POPACCOUNTS_SESSION_TIMEOUT": 1800.0,  # one POP3 session at most (trickling servers)
    "POPACCOUNTS_SOURCE_ADDRESS": None,  # bind outgoing connections (tests)
    # exact (IP address, port) pairs allowed though private, on their own port (a demo
    # mailbox on loopback): [("127.0.0.1", 19995)] or ["127.0.0.1:19995", "[::1]:19995"]
    "POPACCOUNTS_TRUSTED_SERVERS": (),
    "POPACCOUNTS_TRUSTED_SERVERS_CA_FILE": None,  # a CA trusted for those servers only
    # Sending (R9-R11): the host's system mailer, for confirmation codes and for accounts
    # without their own SMTP server
    "POPACCOUNTS_SYSTEM_SMTP_HOST": None,  # None: no system mailer (no codes can be sent)
    "POPACCOUNTS_SYSTEM_SMTP_PORT": 587,
    "POPACCOUNTS_SYSTEM_SMTP_SECURITY": "starttls",  # "ssl" | "starttls" | "plain"
    "POPACCOUNTS_SYSTEM_SMTP_USERNAME": None,
    "POPACCOUNTS_SYSTEM_SMTP_PASSWORD": None,
    "POPACCOUNTS_SYSTEM_SMTP_FROM": None,  # the codes' From, and the relay's envelope sender
    "POPACCOUNTS_SYSTEM_SMTP_CA_FILE": None,  # default: POPACCOUNTS_CA_FILE
    "POPACCOUNTS_SMTP_LOCAL_HOSTNAME": "localhost",  # our EHLO name
    "POPACCOUNTS_SITE_NAME": None,  # named in the confirmation emails
    "POPACCOUNTS_VERIFICATION_CODE_TTL": 24 * 3600,  # seconds a code stays valid
    "POPACCOUNTS_VERIFICATION_CODE_DIGITS": 6,  # at least 6
    "POPACCOUNTS_VERIFICATION_MAX_ATTEMPTS": 5,  # wrong tries before a code is locked
    "POPACCOUNTS_VERIFICATION_RESEND_SECONDS": 60,  # minimum time between two codes
    "POPACCOUNTS_VERIFICATION_MAX_SENDS_PER_DAY": 5,  # codes per target address per 24 h
    "POPACCOUNTS_VERIFICATION_MAX_SENDS_PER_USER_PER_DAY": 20,  # codes one user asks for
    "POPACCOUNTS_VERIFICATION_MAX_SENDS_PER_SITE_PER_HOUR": 200,  # all users together
    "POPACCOUNTS_DNS_NAMESERVERS": None,  # DMARC look-ups: ["ip" or "ip:port"]; None: system
    # Retrieval
    "POPACCOUNTS_MAX_MESSAGE_SIZE": 50 * 1024 * 1024,
    "POPACCOUNTS_MAX_MESSAGES_PER_SESSION": 1000,
    "POPACCOUNTS_MAX_LISTING": 300_000,  # a mailbox listing more messages is refused, named
    "POPACCOUNTS_DEFAULT_INTERVAL_MINUTES": 5,
    "POPACCOUNTS_MIN_INTERVAL_MINUTES": 3,  # the allowed range of per-account intervals
    "POPACCOUNTS_MAX_INTERVAL_MINUTES": 60,
    "POPACCOUNTS_BACKOFF_BASE_SECONDS": 60,  # first retry after a transient failure
    "POPACCOUNTS_BACKOFF_MAX_SECONDS": 3600,  # back-off cap (doubling, with jitter)
    # Scheduling
    "POPACCOUNTS_SCHEDULER_ENABLED": False,
    "POPACCOUNTS_SCHEDULER_TICK_SECONDS": 30,
    "POPACCOUNTS_WORKERS": 16,  # fetches at once per process (mostly waiting on the network)
    "POPACCOUNTS_LEASE_SECONDS": 60,  # renewed every quarter; a crashed fetch's expires
    # Pages
    "POPACCOUNTS_URL_PREFIX": "/settings/mail-accounts",
    "POPACCOUNTS_BLUEPRINT_NAME": "popaccounts",  # the blueprint's name (endpoints name.*)
    "POPACCOUNTS_MAILBOX_ENDPOINT": None,  # host endpoint taking account_id= (R8)
    # More providers in the wizard's step 2 (web/accounts.py extra_providers): the host's
    # own servers, {"key": {"label": .., "pop_host": .., "pop_port": .., ...}}
    "POPACCOUNTS_EXTRA_PROVIDERS": {},
    "POPACCOUNTS_BASE_TEMPLATE": None,  # host layout the pages extend (blocks title/head/content)
    # Languages (i18n.py): the locale comes from the host's Flask-Babel selector, else
    # Accept-Language; these two force it
    "POPACCOUNTS_LANG": None,  # one language for every page, e.g. "ar" (None: per request)
    "POPACCOUNTS_TEXT_DIRECTION": None,  # "rtl" | "ltr" (None: the locale's direction)
    "POPACCOUNTS_TRANSLATION_DIRECTORIES": (),  # host catalogues (domain popaccounts) that
    # add languages or override ours
    # The pages' Content-Security-Policy (web/security.py PAGE_CSP); "" sends none (a
    # host that sets its own, or whose POPACCOUNTS_BASE_TEMPLATE needs inline script)
    "POPACCOUNTS_CONTENT_SECURITY_POLICY": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'self'"),
    # OAuth (Outlook.com / Office 365; see services/oauth.py)
    "POPACCOUNTS_MICROSOFT_CLIENT_ID": None,  # the host's Microsoft app registration
    "POPACCOUNTS_MICROSOFT_CLIENT_SECRET": None,
    "POPACCOUNTS_MICROSOFT_OFFICE365_TENANT": "organizations",  # or "common" / a tenant id
    "POPACCOUNTS_OAUTH_PROVIDERS": {},  # per-provider overrides: {"outlook": {"token_url": ..}}
    "POPACCOUNTS_OAUTH_REDIRECT_URI": None,  # fixed callback URL (default: built from request)
    "POPACCOUNTS_OAUTH_REFRESH_MARGIN_SECONDS": 300,  # refresh when expiring within this
    "POPACCOUNTS_OAUTH_TIMEOUT": 15.0,  # seconds for token requests
}


#: The config key holding the allowed ports of each kind of user-given server.
PORTS_KEYS = {
    "pop3": "POPACCOUNTS_ALLOWED_POP3_PORTS",
    "smtp": "POPACCOUNTS_ALLOWED_SMTP_PORTS",
}


def _trusted_pair(item: Any) -> tuple[str, int]:
    if isinstance(item, str):
        host, sep, port = item.strip().rpartition(":")
        if not sep:
            raise ValueError(f"POPACCOUNTS_TRUSTED_SERVERS: {item!r} has no port")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    else:
        host, port = item
    try:
        ip = ipaddress.ip_address(str(host))
        number = int(port)
    except ValueError:
        raise ValueError(f"POPACCOUNTS_TRUSTED_SERVERS: {item!r} is not an (IP address, "
                         f"port) pair; name the address, not a host name") from None
    if not 0 < number < 65536:
        raise ValueError(f"POPACCOUNTS_TRUSTED_SERVERS: {item!r} has no valid port")
    return str(ip), number


def trusted_servers(items: Iterable[Any] | None) -> frozenset[tuple[str, int]]:
    """``POPACCOUNTS_TRUSTED_SERVERS`` as normalised ``(address, port)`` pairs.

    Entries are pairs ``("127.0.0.1", 19995)`` (lists from JSON too) or strings
    ``"127.0.0.1:19995"`` / ``"[::1]:19995"``; an address, never a host name (the pair
    is matched on the address connected to). Raises ``ValueError`` for anything else.
    """
    return frozenset(_trusted_pair(item) for item in items or ())


def net_policy(config: Mapping[str, Any], kind: str = "pop3") -> NetPolicy:
    """The engine's network policy for user-given servers of ``kind`` ("pop3", "smtp")."""
    src = config.get("POPACCOUNTS_SOURCE_ADDRESS")
    session_timeout = config.get("POPACCOUNTS_SESSION_TIMEOUT")
    return NetPolicy(
        allow_private=bool(config["POPACCOUNTS_ALLOW_PRIVATE_HOSTS"]),
        allowed_ports=frozenset(int(p) for p in config[PORTS_KEYS[kind]]),
        allow_plaintext=bool(config["POPACCOUNTS_ALLOW_PLAINTEXT"]),
        ca_file=config.get("POPACCOUNTS_CA_FILE"),
        connect_timeout=float(config["POPACCOUNTS_CONNECT_TIMEOUT"]),
        read_timeout=float(config["POPACCOUNTS_READ_TIMEOUT"]),
        session_timeout=None if session_timeout is None else float(session_timeout),
        source_address=(src, 0) if isinstance(src, str) else src,
        max_listing=int(config["POPACCOUNTS_MAX_LISTING"]),
        trusted_servers=trusted_servers(config.get("POPACCOUNTS_TRUSTED_SERVERS")),
        trusted_ca_file=config.get("POPACCOUNTS_TRUSTED_SERVERS_CA_FILE"),
    )
