"""The Mail Accounts blueprint: one factory, one ``register`` per page group.

``create_blueprint(name)`` builds the blueprint under any name (the host chooses it
with ``POPACCOUNTS_BLUEPRINT_NAME``). Templates never spell that name: they link with
``popaccounts_url(endpoint, **values)``, a template global of the app that knows the
name (and any parent blueprint) the blueprint was registered under. Blueprint-relative
endpoints (``url_for(".index")``) would not do: a host view that renders a template
linking to the pages (the example webmail's compose page, a host layout given as
``POPACCOUNTS_BASE_TEMPLATE``) has ``request.blueprint`` None, so ``.static`` would
be the host's own static folder. The views themselves use ``url_for(".x")``, which
always runs inside the blueprint's requests.

Templates live under ``popaccounts/`` and each can be overridden by the host. Every
response carries the security headers of :mod:`.security`; the app's templates get the
``display_text`` filter (``engine.parse.display_text``), the one rule for showing text
a sender or a user chose (names, subjects): no control or bidi formatting characters.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, url_for
from flask.blueprints import BlueprintSetupState

from .. import i18n
from ..engine.parse import display_text
from . import accounts, filters, mailproblems, oauth, progress, sending, settings
from .helpers import require_login, template_helpers
from .security import add_security_headers


def create_blueprint(name: str = "popaccounts") -> Blueprint:
    """The Mail Accounts blueprint (templates ``popaccounts/*``, static ``popaccounts/*``)."""
    bp = Blueprint(name, __name__, template_folder="templates", static_folder="static",
                   static_url_path="/static")
    bp.before_request(require_login)
    bp.context_processor(template_helpers)
    bp.after_request(add_security_headers)  # CSP, nosniff, Referrer-Policy (web/security)
    bp.record_once(_add_url_global)
    accounts.register(bp)  # the list, the wizard, edit, delete, check now
    progress.register(bp)  # the cards' live progress, one JSON poll per page (R16)
    oauth.register(bp)  # OAuth sign-in, re-authenticate, switch (R12, R13)
    sending.register(bp)  # outgoing server, send mail as (R9-R11)
    settings.register(bp)  # signatures, templates, storage (R1, R19)
    filters.register(bp)  # filters, vacation reply (R1)
    mailproblems.register(bp)  # the card's problem messages: Retry, fetch anyway
    return bp


def _add_url_global(state: BlueprintSetupState) -> None:
    """Give every template of the app ``popaccounts_url`` for this registration.

    ``state.name`` is the name the blueprint was registered under (``register_blueprint``
    may rename it) and ``name_prefix`` its parents' names when it is nested.
    """
    full_name = ".".join(part for part in (state.name_prefix, state.name) if part)

    def popaccounts_url(endpoint: str, **values: Any) -> str:
        """``url_for`` for one of the Mail Accounts endpoints, e.g. ``popaccounts_url("index")``."""
        return url_for(f"{full_name}.{endpoint}", **values)

    state.app.add_template_global(popaccounts_url, "popaccounts_url")
    # lang= and dir= for any layout (the host's too): the locale's, or the config's
    state.app.add_template_global(i18n.html_lang, "popaccounts_lang")
    state.app.add_template_global(i18n.text_direction, "popaccounts_dir")
    state.app.add_template_global(i18n.format_datetime, "popaccounts_datetime")
    # The one display rule for untrusted text (no control or bidi formatting characters)
    state.app.add_template_filter(display_text, "display_text")
