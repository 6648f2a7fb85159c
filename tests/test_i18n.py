"""Where the language, the direction and the time zone come from (flask_popaccounts.i18n).

A small host app with a page that uses the extension's own gettext: the locale follows
``Accept-Language`` when the host has no Flask-Babel selector, the host's selector when
it has one, ``POPACCOUNTS_LANG`` when set; ``dir`` follows the locale; a host catalogue
(``POPACCOUNTS_TRANSLATION_DIRECTORIES``) adds a language and overrides our strings;
Arabic's six plural forms are used; times are shown in the user's time zone.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from flask import Flask, render_template_string, request
from flask_babel import Babel
from flask_login import LoginManager, UserMixin, login_user
from sqlalchemy import create_engine

from flask_popaccounts import PopAccounts, i18n

PAGE = ('<html lang="{{ popaccounts_lang() }}" dir="{{ popaccounts_dir() }}">'
        "{{ text }}|{{ when }}</html>")


class _User(UserMixin):
    def __init__(self, uid: str) -> None:
        self.id = uid


def make_app(tmp_path: Path, *, host_selector: Any = None, tz_hook: Any = None,
             **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, SECRET_KEY="i18n", POPACCOUNTS_SCHEDULER_ENABLED=False,
                      **config)
    if host_selector is not None:
        Babel(app, locale_selector=host_selector)
    manager = LoginManager(app)
    manager.user_loader(_User)
    PopAccounts(app, db=create_engine(f"sqlite:///{tmp_path / 'x.db'}"), timezone=tz_hook)

    @app.route("/page")
    def page() -> str:
        login_user(_User("7"))
        n = int(request.args.get("n", "1"))
        text = i18n.gettext("Mail Accounts") + "/" + i18n.ngettext(
            "%(num)s message fetched", "%(num)s messages fetched", n)
        when = i18n.format_datetime(datetime(2026, 12, 3, 13, 5), "short")
        return render_template_string(PAGE, text=text, when=when)

    return app


def host_catalogue(directory: Path, locale: str, entries: dict[Any, Any]) -> Path:
    """A host's compiled catalogue in the extension's domain."""
    catalogue = Catalog(locale=locale, domain="popaccounts")
    for msgid, msgstr in entries.items():
        catalogue.add(msgid, msgstr)
    target = directory / locale / "LC_MESSAGES"
    target.mkdir(parents=True)
    with (target / "popaccounts.mo").open("wb") as f:
        write_mo(f, catalogue)
    return directory


def get(app: Flask, accept: str | None = None, n: int = 1) -> str:
    headers = {"Accept-Language": accept} if accept else {}
    return app.test_client().get(f"/page?n={n}", headers=headers).get_data(as_text=True)


def test_accept_language_picks_arabic_and_right_to_left(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    html = get(app, "ar-SA,ar;q=0.9,en;q=0.5")
    assert html.startswith('<html lang="ar" dir="rtl">')
    assert "حسابات البريد" in html
    english = get(app, "fr-FR,fr;q=0.9,en;q=0.5")  # no French catalogue: the source
    assert english.startswith('<html lang="en" dir="ltr">') and "Mail Accounts/" in english
    assert get(app).startswith('<html lang="en" dir="ltr">')


@pytest.mark.parametrize(("n", "form"), [(0, 0), (1, 1), (2, 2), (3, 3), (11, 4), (100, 5)])
def test_arabic_has_six_plural_forms(tmp_path: Path, n: int, form: int) -> None:
    from babel.messages.pofile import read_po

    po = Path(i18n.PACKAGE_TRANSLATIONS) / "ar/LC_MESSAGES/popaccounts.po"
    with po.open("rb") as f:
        entry = read_po(f, locale="ar").get(("%(num)s message fetched",
                                              "%(num)s messages fetched"))
    assert entry is not None and len(entry.string) == 6
    # zero, one, two and few (3-10) have words of their own; many (11-99) and other
    # may be spelt alike without diacritics
    assert len(set(entry.string)) >= 5
    html = get(make_app(tmp_path), "ar", n=n)
    assert entry.string[form] % {"num": str(n)} in html


def test_the_hosts_selector_decides(tmp_path: Path) -> None:
    app = make_app(tmp_path, host_selector=lambda: "ar")
    html = get(app, "en")  # the host's user setting wins over the browser
    assert html.startswith('<html lang="ar" dir="rtl">') and "حسابات البريد" in html


def test_a_host_babel_without_selector_gets_accept_language(tmp_path: Path) -> None:
    app = Flask(__name__)
    Babel(app)  # no locale_selector
    app.config.update(TESTING=True, SECRET_KEY="x", POPACCOUNTS_SCHEDULER_ENABLED=False)
    PopAccounts(app, db=create_engine(f"sqlite:///{tmp_path / 'y.db'}"))
    with app.test_request_context(headers={"Accept-Language": "ar"}):
        assert str(i18n.current_locale()) == "ar" and i18n.text_direction() == "rtl"


def test_config_overrides_language_and_direction(tmp_path: Path) -> None:
    app = make_app(tmp_path, POPACCOUNTS_LANG="ar")
    assert get(app, "en").startswith('<html lang="ar" dir="rtl">')
    app = make_app(tmp_path / "b", POPACCOUNTS_TEXT_DIRECTION="ltr")
    assert get(app, "ar").startswith('<html lang="ar" dir="ltr">')


def test_a_host_catalogue_adds_a_language_and_overrides_ours(tmp_path: Path) -> None:
    directory = tmp_path / "host-translations"
    host_catalogue(directory, "fr", {"Mail Accounts": "Comptes de messagerie"})
    host_catalogue(directory, "ar", {"Mail Accounts": "حسابات POP"})
    app = make_app(tmp_path, POPACCOUNTS_TRANSLATION_DIRECTORIES=[str(directory)])
    assert "Comptes de messagerie" in get(app, "fr")
    assert get(app, "fr").startswith('<html lang="fr" dir="ltr">')
    arabic = get(app, "ar")
    assert "حسابات POP/" in arabic  # the host's word wins
    assert "حسابات البريد" not in arabic


def test_times_in_the_users_time_zone(tmp_path: Path) -> None:
    utc = get(make_app(tmp_path), "en")
    assert "1:05" in utc.split("|")[1]  # 13:05 UTC, no host hook: UTC
    riyadh = get(make_app(tmp_path / "r", tz_hook=lambda owner: "Asia/Riyadh"), "en")
    assert "4:05" in riyadh.split("|")[1]  # UTC+3
    seen: list[str] = []
    get(make_app(tmp_path / "s", tz_hook=lambda owner: seen.append(owner) or None), "en")
    assert seen == ["7"]


def test_isolation_helpers() -> None:
    assert i18n.isolate("a@b.example") == "\u2068a@b.example\u2069"
    assert str(i18n.bdi("<x@y>")) == "<bdi>&lt;x@y&gt;</bdi>"


def test_mail_written_outside_a_request_is_in_the_owners_language(tmp_path: Path) -> None:
    """What the outbox does for a forward's note or a vacation reply's default subject:
    the host's ``locale`` hook names the owner's language, with no request at all."""
    from flask_popaccounts.hooks import Hooks
    from flask_popaccounts.services.texts import owner_locale

    app = Flask(__name__)
    app.config.update(TESTING=True, SECRET_KEY="x", POPACCOUNTS_SCHEDULER_ENABLED=False)
    PopAccounts(app, db=create_engine(f"sqlite:///{tmp_path / 'z.db'}"),
                hooks=Hooks(locale=lambda owner: "ar" if owner == "7" else None))
    with app.app_context():
        with i18n.in_locale(owner_locale(app, "7")):
            assert i18n.gettext("Mail Accounts") == "حسابات البريد"
        with i18n.in_locale(owner_locale(app, "8")):  # unknown: the site's default
            assert i18n.gettext("Mail Accounts") == "Mail Accounts"
