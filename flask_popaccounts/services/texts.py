"""The engine's words in the reader's language, and the locale of mail we write.

The engine marks its texts (:mod:`..engine.texts`): fixed ones are msgids, sentences
with variables are :class:`~..engine.texts.Text`. :func:`translate` turns either into
the current language (the request's, or :func:`~..i18n.in_locale`'s): a Text's msgid is
translated whole, its variables that are texts are translated too, and the rest is data,
isolated (:func:`~..i18n.isolate`) so an address or a folder's name keeps its direction
inside a right-to-left sentence.

:func:`owner_locale` says in which language to write mail for an account's owner when
no request is there to ask (a vacation reply or a forward sent after a fetch).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .. import i18n
from ..engine.texts import Text
from ..runtime import get_state

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["owner_locale", "sentences", "translate", "translate_all"]


def _variable(value: object) -> str:
    if isinstance(value, Text):
        return translate(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return i18n.isolate(i18n.format_number(value))
    text = str(value)
    return i18n.isolate(text) if text else ""


def translate(text: object) -> str:
    """An engine text in the current language ("" for an empty one)."""
    if isinstance(text, Text):
        if not text.variables:
            return i18n.gettext(text.msgid)
        return i18n.gettext(text.msgid, **{k: _variable(v) for k, v in text.variables.items()})
    text = str(text or "")
    return i18n.gettext(text) if text else ""


def translate_all(texts: Iterable[object]) -> list[str]:
    """:func:`translate` for each."""
    return [translate(t) for t in texts]


def sentences(*parts: str) -> str:
    """Whole translated sentences one after the other (the empty ones left out)."""
    return " ".join(p for p in parts if p)


def owner_locale(app: Flask, owner_id: str) -> str | None:
    """The language to write in for ``owner_id``: the host's ``locale`` hook
    (:class:`~..hooks.Hooks`) when it has one, else None, which keeps the current one
    (the request's: the owner's own; outside a request the site's default,
    ``POPACCOUNTS_LANG`` or Flask-Babel's default locale)."""
    hooks = get_state(app).hooks
    name = hooks.user_locale(str(owner_id)) if hooks is not None else None
    return str(name).replace("-", "_") if name else None
