"""The webmail's languages: its own Flask-Babel, locale selector and time zone.

The example is a host with its own catalogue (gettext domain ``messages``,
``example_app/translations``). It initialises Flask-Babel before ``PopAccounts(app)``
with a selector of its own, so the extension follows the host's choice (``i18n.setup``
adopts the host's Babel):

- the language the user picked with the switch in the top bar (English / العربية,
  kept in the session by a small POST with CSRF);
- else the best match of the request's ``Accept-Language`` among the webmail's
  languages; else English.

The time zone is the config's ``EXAMPLE_TIMEZONE`` (default ``UTC``) for every user; a
real host would read it from its user table. It reaches both Flask-Babel (the
webmail's dates, ``format_datetime``) and the extension (``PopAccounts(timezone=...)``).

The top bar of ``base.html`` is also the layout of the extension's pages, where ``_``
is the extension's own gettext (domain ``popaccounts``); its texts therefore live in
``_chrome.html`` macros, imported without context, where ``_`` is always the
webmail's.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Flask,
    current_app,
    has_request_context,
    redirect,
    request,
    session,
    url_for,
)
from flask_babel import Babel, gettext
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from flask_popaccounts.i18n import bdi, isolate, text_direction

#: The webmail's languages: code -> its name, written in that language.
LANGUAGES = {"en": "English", "ar": "العربية"}
SESSION_KEY = "lang"


def N_(message: str) -> str:
    """Marks a text for extraction; it is translated where it is shown."""
    return message


def select_locale() -> str | None:
    """The user's pick from the switch, else the browser's best match, else English."""
    if not has_request_context():
        return None
    chosen = session.get(SESSION_KEY)
    if chosen in LANGUAGES:
        return str(chosen)
    return request.accept_languages.best_match(list(LANGUAGES))


def select_timezone() -> str:
    """The webmail's time zone (an IANA name such as ``Asia/Riyadh``)."""
    return str(current_app.config["EXAMPLE_TIMEZONE"])


def user_timezone(owner_id: str) -> str | None:
    """The extension's ``timezone=`` hook: owner id -> IANA name (the same for all here)."""
    return select_timezone()


def current_page() -> str:
    """Where the language switch brings the user back to: this page, read again (the
    page a form was posted to only when it can be read; else the mailbox)."""
    if request.method == "GET":
        return request.full_path.rstrip("?")
    try:
        current_app.url_map.bind("").match(request.path, method="GET")
    except HTTPException:
        return url_for("mailbox_home")
    return request.path


def init_app(app: Flask) -> None:
    """Flask-Babel with the webmail's selectors (before ``PopAccounts(app)``), the
    template helpers and the language switch (``POST /language``)."""
    app.config.setdefault("EXAMPLE_TIMEZONE", "UTC")
    Babel(app, locale_selector=select_locale, timezone_selector=select_timezone)
    app.add_template_global(bdi, "bdi")
    app.add_template_filter(isolate, "isolate")
    app.add_template_filter(isolate_rtl, "isolate_rtl")
    app.jinja_env.globals["webmail_languages"] = LANGUAGES
    app.add_template_global(current_page, "webmail_current_page")
    app.add_template_global(_current_language, "webmail_language")
    app.add_template_global(folder_label, "folder_label")
    app.add_template_global(folder_text, "folder_text")

    @app.route("/language", methods=["POST"])
    def set_language() -> Any:
        from . import _local_path

        lang = request.form.get("lang", "")
        if lang in LANGUAGES:
            session[SESSION_KEY] = lang
        target = request.form.get("next") or ""
        return redirect(target if _local_path(target) else url_for("mailbox_home"))


def isolate_rtl(value: object) -> str:
    """A datum in plain text (a ``<title>``, a quoted line in a mail body), isolated in
    FSI...PDI on a right-to-left page, where it would otherwise take the sentence's
    direction; left as it is on a left-to-right page (no invisible characters where
    they change nothing)."""
    return isolate(value) if text_direction() == "rtl" else str(value)


def _current_language() -> str:
    from flask_babel import get_locale

    locale = get_locale()
    return locale.language if locale is not None else "en"


def folder_label(item: Any) -> Markup:
    """A folder's name as a page shows it: Inbox, Sent and Trash in the user's language,
    a folder the user named as data (``<bdi>``)."""
    label = ROLE_NAMES.get(str(item.role))
    return Markup.escape(gettext(label)) if label else bdi(item.name)


def folder_text(item: Any) -> str:
    """A folder's name as plain text (a flash, an ``<option>``): Inbox, Sent and Trash
    translated, the others as the user named them."""
    label = ROLE_NAMES.get(str(item.role))
    return gettext(label) if label else str(item.name)


#: The folders every account has, named in the catalogue (translated when shown).
ROLE_NAMES = {"inbox": N_("Inbox"), "sent": N_("Sent"), "trash": N_("Trash")}
