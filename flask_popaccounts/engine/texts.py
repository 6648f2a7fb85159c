"""Words a user reads, written in English and marked for translation (pure).

The engine imports no translation machinery (standard library only); it marks its texts
and the layers above translate them in the reader's language (``flask_popaccounts.i18n``):

- :func:`N_` marks a fixed text (an error's ``title`` and ``help``, a label) for
  extraction and returns it unchanged. Whoever shows it calls ``_(text)``: titles and
  helps are therefore whole msgids, never built by concatenation or formatting.
- :class:`Text` is a sentence with variables (a filter rule's problem, "Condition 2:
  ..."). It is a ``str``, its English with the variables filled in (what logs and tests
  read), and it keeps its ``msgid`` and ``variables``: a caller translates the msgid
  and fills in the variables itself (:func:`..services.texts.translate`), translating
  those that are texts too and isolating the data (an address, a folder's name).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["N_", "Text"]


def N_(message: str) -> str:
    """Mark ``message`` for translation (extraction); it is translated where it is shown."""
    return message


class Text(str):
    """A sentence for a user: English as a ``str``, plus ``msgid`` and ``variables``.

    Write ``Text(N_("Condition %(num)s: %(problem)s"), num=2, problem=...)`` (``N_`` so
    that the msgid is extracted). A variable that is a :class:`Text` is a translatable
    text of its own (a label, a nested sentence); any other value is data.
    ``Text(N_("Subject"))`` makes a label usable as such a variable.
    """

    msgid: str
    variables: Mapping[str, object]

    def __new__(cls, msgid: str, **variables: object) -> Text:
        english = msgid % {k: str(v) for k, v in variables.items()} if variables else msgid
        self = super().__new__(cls, english)
        self.msgid = msgid
        self.variables = variables
        return self
