"""The Mail Accounts blueprint: one factory, one ``register`` per page group.

``create_blueprint(name)`` builds the blueprint under any name (the host chooses it
with ``POPACCOUNTS_BLUEPRINT_NAME``; templates link with blueprint-relative endpoints,
so every page works under another name and URL prefix). Templates live under
``popaccounts/`` and each can be overridden by the host.
"""

from __future__ import annotations

from flask import Blueprint

from . import accounts, filters, oauth, sending, settings
from .helpers import require_login, template_helpers


def create_blueprint(name: str = "popaccounts") -> Blueprint:
    """The Mail Accounts blueprint (templates ``popaccounts/*``, static ``popaccounts/*``)."""
    bp = Blueprint(name, __name__, template_folder="templates", static_folder="static",
                   static_url_path="/static")
    bp.before_request(require_login)
    bp.context_processor(template_helpers)
    accounts.register(bp)  # the list, the wizard, edit, delete, check now
    oauth.register(bp)  # OAuth sign-in, re-authenticate, switch (R12, R13)
    sending.register(bp)  # outgoing server, send mail as (R9-R11)
    settings.register(bp)  # signatures, templates, storage (R1, R19)
    filters.register(bp)  # filters, vacation reply (R1)
    return bp
