"""What a reader of a page sees that is written in Latin letters, and is not data.

:func:`untranslated` parses a page (``html.parser``, no browser) and returns every
Latin word a user reads (text, ``title``/``aria-label``/``placeholder``/``alt``,
button labels, the ``<title>``) that is neither

- inside an element marked as data: ``<bdi>``, an element with ``dir=`` (``ltr`` /
  ``auto``: an address, a host, a subject, a user's own text), ``<textarea>``,
  ``<code>``, ``<kbd>``, ``<samp>``, ``<pre>``; nor
- isolated in plain text, between FSI and PDI (``i18n.isolate``: a datum where no
  element can mark it, such as a ``<title>`` or an ``<option>``); nor
- one of the technical names that stay in Latin script in every language
  (:data:`LATIN_NAMES`: POP3, SMTP, OAuth, Gmail...).

On an Arabic page the result must be empty: each leftover is an English text that
missed gettext, or a datum that is not isolated (and would read scrambled in a
right-to-left sentence). The same rule therefore checks bidi isolation.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

#: Names that are the same in every language (protocols, brands, standards).
LATIN_NAMES = frozenset("""
    POP POP3 IMAP SMTP SSL TLS STARTTLS OAuth OAuth2 XOAUTH2 UIDL UIDLs IDLE LMTP
    Gmail Google Outlook Office Microsoft Zoho Yahoo iCloud Apple Hotmail Live
    DMARC SPF DKIM HTML MIME UTC ID IP DNS URL HTTPS
""".split())

_DATA_TAGS = {"bdi", "textarea", "code", "kbd", "samp", "pre", "script", "style",
              "template"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
         "source", "track", "wbr"}
_ATTRS = ("title", "aria-label", "placeholder", "alt")
_WORD = re.compile("[A-Za-z][A-Za-z'\u2019]+")
_ISOLATED = re.compile("\u2068[^\u2068\u2069]*\u2069")  # FSI ... PDI: data in plain text


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []  # (tag, inside data)
        self.found: list[str] = []

    def _in_data(self) -> bool:
        return bool(self.stack) and self.stack[-1][1]

    def _words(self, text: str, where: str) -> None:
        words = [w for w in _WORD.findall(_ISOLATED.sub(" ", text)) if w not in LATIN_NAMES]
        if words:
            self.found.append(f"{where} {' '.join(text.split())[:100]!r}")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        data = self._in_data() or tag in _DATA_TAGS or values.get("dir") in ("ltr", "auto")
        for name in _ATTRS:
            value = values.get(name)
            if value and not data:
                self._words(value, f"<{tag} {name}>")
        if tag == "input" and values.get("type") in ("submit", "button", "reset"):
            if values.get("value") and not data:
                self._words(values["value"] or "", "<input value>")
        if tag not in _VOID:
            self.stack.append((tag, data))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID and self.stack and self.stack[-1][0] == tag:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        if not data.strip() or self._in_data():
            return
        where = f"<{self.stack[-1][0]}>" if self.stack else "text"
        self._words(data, where)


def untranslated(html: str) -> list[str]:
    """Each text (one entry per text node or attribute) in which a reader sees a Latin
    word outside data and :data:`LATIN_NAMES`."""
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return reader.found
