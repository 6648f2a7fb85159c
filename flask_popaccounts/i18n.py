"""Languages: the extension's gettext domain, the locale and time zone, bidi isolation.

A leaf (like ``config`` and ``runtime``): ``services/``, ``web/`` and ``jobs/`` import it;
the engine, which is standard library only, marks its texts with its own ``N_`` and the
pages translate them here.

- **The domain.** Every string of the extension lives in the gettext domain
  ``popaccounts`` (so it never mixes with the host's ``messages``), in the catalogues
  that ship in the package (``translations/<locale>/LC_MESSAGES/popaccounts.mo``). A host
  adds languages or overrides strings with ``POPACCOUNTS_TRANSLATION_DIRECTORIES``: its
  directories are read after ours, so their entries win.
- **The locale comes from the host.** A host that runs Flask-Babel with a
  ``locale_selector`` decides (its user's setting); otherwise the extension installs one
  that picks the best of the available languages from the request's ``Accept-Language``.
  ``POPACCOUNTS_LANG`` forces one language (and ``lang=``); ``dir`` follows the locale
  (Arabic: ``rtl``) unless ``POPACCOUNTS_TEXT_DIRECTION`` says otherwise.
- **The time zone comes from the host**: the ``timezone=`` hook of ``PopAccounts`` (owner
  id -> IANA name), else the host's Flask-Babel ``timezone_selector``, else UTC.
- **Bidi isolation.** :func:`isolate` wraps a left-to-right datum (an address, a host, a
  number) that goes inside a translated sentence in FSI...PDI, so punctuation and the
  datum read correctly on right-to-left pages; templates use ``bdi()`` (``<bdi>``).

``gettext`` and ``ngettext`` take ``%(name)s`` variables; ``ngettext`` formats ``num``
by the locale (``2,000``). :func:`lazy_gettext` is for texts defined at import time
(form labels): it is translated each time it is shown, in the request's language.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from babel import Locale
from babel import dates as babel_dates
from babel import numbers as babel_numbers
from flask import current_app, g, has_app_context, has_request_context, request
from flask_babel import Babel, Domain, LazyString, force_locale
from flask_babel import get_locale as babel_locale
from flask_babel import get_timezone as babel_timezone
from markupsafe import Markup, escape

if TYPE_CHECKING:
    from flask import Flask

__all__ = [
    "N_",
    "bdi",
    "current_locale",
    "format_datetime",
    "format_number",
    "gettext",
    "html_lang",
    "in_locale",
    "isolate",
    "lazy_gettext",
    "lazy_ngettext",
    "ngettext",
    "setup",
    "text_direction",
    "user_timezone",
]

DOMAIN = "popaccounts"
#: The catalogues that ship in the package.
PACKAGE_TRANSLATIONS = os.path.join(os.path.dirname(__file__), "translations")
#: The language the source strings are written in.
SOURCE_LOCALE = "en"

FSI, PDI = "\u2068", "\u2069"  # FIRST STRONG ISOLATE ... POP DIRECTIONAL ISOLATE


def N_(message: str) -> str:
    """Marks a text for extraction without translating it here (it is translated where
    it is shown, with :func:`gettext`)."""
    return message


# -- setup ------------------------------------------------------------------------------

def setup(app: Flask, *, timezone_hook: Callable[[str], str | None] | None = None) -> None:
    """Give ``app`` the extension's domain, and a locale selector if the host has none.

    Called by ``init_app``. A host that initialises Flask-Babel after the extension keeps
    its own selector; one without a selector gets ours (``Accept-Language``).
    """
    directories = [PACKAGE_TRANSLATIONS, *(
        os.path.join(app.root_path, d) if not os.path.isabs(d) else d
        for d in app.config.get("POPACCOUNTS_TRANSLATION_DIRECTORIES") or ())]
    state = app.extensions["popaccounts"]
    state.domain = Domain(translation_directories=directories, domain=DOMAIN)
    state.timezone_hook = timezone_hook
    state.locales = _available_locales(directories)
    if "babel" not in app.extensions:
        Babel(app, locale_selector=_accept_language)
    _adopt_babel(app)


def _adopt_babel(app: Flask) -> None:
    """A host's Flask-Babel without a locale selector gets ours (Accept-Language)."""
    config = app.extensions.get("babel")
    if config is not None and config.locale_selector is None:
        config.locale_selector = _accept_language


def _available_locales(directories: list[str]) -> list[str]:
    found = [SOURCE_LOCALE]
    for directory in directories:
        if not os.path.isdir(directory):
            continue
        for name in sorted(os.listdir(directory)):
            mo = os.path.join(directory, name, "LC_MESSAGES", f"{DOMAIN}.mo")
            if os.path.isfile(mo) and name not in found:
                found.append(name)
    return found


def _accept_language() -> str | None:
    """The extension's locale selector: POPACCOUNTS_LANG, else the best Accept-Language."""
    forced = current_app.config.get("POPACCOUNTS_LANG")
    if forced:
        return str(forced).replace("-", "_")
    if not has_request_context():
        return None
    locales = getattr(current_app.extensions.get("popaccounts"), "locales", None) or [
        SOURCE_LOCALE]
    best = request.accept_languages.best_match([loc.replace("_", "-") for loc in locales])
    return best.replace("-", "_") if best else None


def _domain() -> Domain | None:
    if not has_app_context():
        return None
    state = current_app.extensions.get("popaccounts")
    return getattr(state, "domain", None)


# -- translating ------------------------------------------------------------------------

def gettext(message: str, **variables: Any) -> str:
    """``message`` in the current language, with ``%(name)s`` variables filled in."""
    domain = _domain()
    text = domain.get_translations().ugettext(message) if domain else message
    return text % variables if variables else text


def ngettext(singular: str, plural: str, num: int, **variables: Any) -> str:
    """The plural form for ``num`` (Arabic has six), ``%(num)s`` formatted by locale."""
    domain = _domain()
    if domain:
        text = domain.get_translations().ungettext(singular, plural, num)
    else:
        text = singular if num == 1 else plural
    variables.setdefault("num", format_number(num))
    return text % variables


def lazy_gettext(message: str, **variables: Any) -> LazyString:
    """:func:`gettext`, evaluated each time the text is shown (texts defined at import)."""
    return LazyString(gettext, message, **variables)


def lazy_ngettext(singular: str, plural: str, num: int, **variables: Any) -> LazyString:
    return LazyString(ngettext, singular, plural, num, **variables)


@contextmanager
def in_locale(locale: str | None) -> Iterator[None]:
    """Translate in ``locale`` for a while (an e-mail written for its reader, not for
    the request); None keeps the current one."""
    if not locale:
        yield
        return
    with force_locale(locale):
        yield


# -- locale, direction, time zone -------------------------------------------------------

def current_locale() -> Locale:
    """The locale of this request (or of ``in_locale``); English outside a request."""
    if has_app_context():
        _adopt_babel(current_app)
        if "babel" in current_app.extensions:
            locale = babel_locale()
            if locale is not None:
                return locale
    return Locale.parse(SOURCE_LOCALE)


def html_lang() -> str:
    """``lang=`` for the page: POPACCOUNTS_LANG, else the locale as a BCP 47 tag."""
    forced = current_app.config.get("POPACCOUNTS_LANG") if has_app_context() else None
    return str(forced or current_locale()).replace("_", "-")


def text_direction() -> str:
    """``dir=`` for the page: POPACCOUNTS_TEXT_DIRECTION, else the locale's direction."""
    forced = current_app.config.get("POPACCOUNTS_TEXT_DIRECTION") if has_app_context() else None
    if forced:
        return str(forced)
    return "rtl" if current_locale().character_order == "right-to-left" else "ltr"


def user_timezone() -> Any:
    """The signed-in user's time zone: the host's hook, its Babel selector, else UTC.

    Asked once per request (a page formats many times; the host's hook may be a query).
    """
    if has_request_context():
        cached = getattr(g, "_popaccounts_tz", None)
        if cached is None:
            cached = g._popaccounts_tz = _user_timezone()
        return cached
    return _user_timezone()


def _user_timezone() -> Any:
    if has_app_context():
        hook = getattr(current_app.extensions.get("popaccounts"), "timezone_hook", None)
        if hook is not None and has_request_context():
            from flask_login import current_user

            if current_user and current_user.is_authenticated:
                name = hook(str(current_user.get_id()))
                if name:
                    return babel_dates.get_timezone(name)
        if "babel" in current_app.extensions and g:
            tz = babel_timezone()
            if tz is not None:
                return tz
    return timezone.utc


def format_datetime(value: datetime | None, format: str = "when") -> str:
    """A stored time (naive means UTC) in the user's time zone and locale; "" for None.

    ``"when"`` (the default) is what a card says: the medium date and the short time,
    joined as the locale joins them ("Dec 3, 2026, 2:22 PM"; no seconds). Any Babel
    format name or pattern may be given instead.
    """
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    locale, tz = current_locale(), user_timezone()
    if format != "when":
        return str(babel_dates.format_datetime(value, format, tzinfo=tz, locale=locale))
    local = value.astimezone(tz)
    return str(locale.datetime_formats["medium"]).format(
        babel_dates.format_time(local, "short", locale=locale),
        babel_dates.format_date(local, "medium", locale=locale))


def format_number(num: int | float) -> str:
    """``2000`` -> ``2,000`` in English (the locale's separators)."""
    return str(babel_numbers.format_decimal(num, locale=current_locale()))


# -- bidi isolation ---------------------------------------------------------------------

def isolate(value: object) -> str:
    """A datum inside a sentence of plain text (a flash, an e-mail, JSON for a page),
    isolated so that it keeps its own direction."""
    return f"{FSI}{value}{PDI}"


def bdi(value: object) -> Markup:
    """A datum inside a sentence of a page: ``<bdi>value</bdi>`` (escaped)."""
    return Markup("<bdi>%s</bdi>") % (value,)


def template_gettext(message: str, **variables: Any) -> Markup:
    """``_()`` in the extension's templates: the translation, escaped, with variables
    escaped unless they are markup already (``bdi(...)``)."""
    domain = _domain()
    text = domain.get_translations().ugettext(message) if domain else message
    rv = escape(text)
    return rv % variables if variables else rv


def template_ngettext(singular: str, plural: str, num: int, **variables: Any) -> Markup:
    domain = _domain()
    if domain:
        text = domain.get_translations().ungettext(singular, plural, num)
    else:
        text = singular if num == 1 else plural
    variables.setdefault("num", bdi(format_number(num)))
    return escape(text) % variables


def template_globals() -> dict[str, Any]:
    """What the extension's templates call: ``_``, ``gettext``, ``ngettext``, ``bdi``,
    ``format_datetime``, ``format_number`` (the blueprint's context processor)."""
    return {
        "_": template_gettext,
        "gettext": template_gettext,
        "ngettext": template_ngettext,
        "bdi": bdi,
        "format_datetime": format_datetime,
        "format_number": format_number,
    }
