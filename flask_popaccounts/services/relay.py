"""The host's own mailer (``POPACCOUNTS_SYSTEM_SMTP_*``) and the policy for users' SMTP.

The system relay sends the confirmation codes, and the mail of accounts that have no
outgoing server of their own. It is configured by the host, so it is trusted: private
addresses and its one port are allowed, and plaintext when the host chose it (a local
relay on port 25). Users' own SMTP servers get :func:`smtp_net_policy`: public hosts,
``POPACCOUNTS_ALLOWED_SMTP_PORTS``, TLS unless the host allows plaintext.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import net_policy
from ..engine.errors import PopAccountsError
from ..engine.types import AuthMethod, Credentials, NetPolicy, Security, ServerSpec
from ..i18n import N_

if TYPE_CHECKING:
    from flask import Flask


class SystemMailerMissing(PopAccountsError):
    code = "no_system_mailer"
    title = N_("This site cannot send confirmation emails")
    help = N_("The site's administrator has not configured a mail server for confirmation codes.")


def smtp_net_policy(app: Flask) -> NetPolicy:
    """The network policy for users' SMTP servers (POPACCOUNTS_ALLOWED_SMTP_PORTS)."""
    return net_policy(app.config, "smtp")


def local_hostname(app: Flask) -> str:
    """Our EHLO name."""
    return str(app.config.get("POPACCOUNTS_SMTP_LOCAL_HOSTNAME") or "localhost")


def system_relay(app: Flask) -> tuple[ServerSpec, Credentials | None, NetPolicy, str]:
    """The host's own mailer: server, credentials, network policy and its From address.

    Raises :class:`SystemMailerMissing` when the host has configured none.
    """
    cfg = app.config
    host = cfg.get("POPACCOUNTS_SYSTEM_SMTP_HOST")
    sender = cfg.get("POPACCOUNTS_SYSTEM_SMTP_FROM")
    if not host or not sender:
        raise SystemMailerMissing()
    port = int(cfg["POPACCOUNTS_SYSTEM_SMTP_PORT"])
    security = Security(cfg["POPACCOUNTS_SYSTEM_SMTP_SECURITY"])
    base = smtp_net_policy(app)
    net = NetPolicy(
        allow_private=True, allowed_ports=frozenset({port}),
        allow_plaintext=security is Security.PLAIN,
        ca_file=cfg.get("POPACCOUNTS_SYSTEM_SMTP_CA_FILE") or base.ca_file,
        connect_timeout=base.connect_timeout, read_timeout=base.read_timeout,
    )
    user = cfg.get("POPACCOUNTS_SYSTEM_SMTP_USERNAME") or ""
    password = cfg.get("POPACCOUNTS_SYSTEM_SMTP_PASSWORD")
    creds = Credentials(AuthMethod.PASSWORD, str(password)) if user and password else None
    return ServerSpec(host=str(host), port=port, security=security, username=user), creds, net, \
        str(sender)
