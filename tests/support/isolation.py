"""Page or mail text as a reader sees it, whether data in a sentence is isolated or not.

A datum inside a translated sentence is isolated (``i18n.isolate``: FSI...PDI in plain
text, ``<bdi>`` in a page), so English assertions on whole sentences read the text
without those marks: :func:`plain`.
"""

from __future__ import annotations

_MARKS = ("\u2068", "\u2069", "<bdi>", "</bdi>")


def plain(text: str) -> str:
    """``text`` without bidi isolates (FSI, PDI) and ``<bdi>`` tags."""
    for mark in _MARKS:
        text = text.replace(mark, "")
    return text
