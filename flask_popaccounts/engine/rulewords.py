"""The words of filter rules: the editor's labels and a rule's one-line summary (pure).

The labels are msgids (:func:`~.texts.N_`): the rule editor shows ``_(label)``.
:func:`describe_text` builds the summary as a :class:`~.texts.Text`, so the services
translate it whole (labels translated, the rule's values kept as data);
:func:`.filters.describe` is its English.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .texts import N_, Text

if TYPE_CHECKING:
    from .filters import Rule

__all__ = ["ACTION_LABELS", "ENTER_TEXT", "FIELD_LABELS", "OP_LABELS", "describe_text"]

FIELD_LABELS = {"from": N_("From"), "to": N_("To or Cc"), "subject": N_("Subject"),
                "header": N_("Header"), "body": N_("Body text"), "size": N_("Size (KiB)")}
OP_LABELS = {"contains": N_("contains"), "not_contains": N_("does not contain"), "is": N_("is"),
             "not_is": N_("is not"), "matches": N_("matches (regular expression)"),
             "not_matches": N_("does not match"), "over": N_("is over"),
             "under": N_("is under")}
ACTION_LABELS = {"move": N_("Move to folder"), "mark_read": N_("Mark as read"), "flag": N_("Flag"),
                 "delete": N_("Delete (move to Trash)"), "forward": N_("Forward to"),
                 "stop": N_("Stop processing more rules")}
#: "enter the text ... should ...", one whole sentence per operator
ENTER_TEXT = {"contains": N_("enter the text %(field)s should contain."),
               "not_contains": N_("enter the text %(field)s should not contain."),
               "is": N_("enter the text %(field)s should be."),
               "not_is": N_("enter the text %(field)s should not be.")}


def _joined(parts: list[Text], msgid: str) -> Text | str:
    """``parts`` folded into one text, two at a time ("A and B", then "A and B and C")."""
    if not parts:
        return ""
    out = parts[0]
    for part in parts[1:]:
        out = Text(msgid, first=out, next=part)
    return out


def describe_text(rule: Rule) -> Text:
    """A one-line summary for the list page ("If Subject contains “x”: Flag"), as a
    :class:`~.texts.Text` whose labels translate and whose values are data."""
    conds = []
    for c in rule.conditions:
        what: object = c.header if c.field == "header" else Text(
            FIELD_LABELS.get(c.field, c.field))
        conds.append(Text(N_("%(field)s %(op)s “%(value)s”"), field=what,
                          op=Text(OP_LABELS.get(c.op, c.op)), value=c.value))
    acts = []
    for a in rule.actions:
        if a.kind == "move":
            acts.append(Text(N_("Move to folder %(folder)s"), folder=a.value))
        elif a.kind == "forward":
            acts.append(Text(N_("Forward to %(address)s"), address=a.value))
        else:
            acts.append(Text(ACTION_LABELS[a.kind]))
    return Text(N_("If %(conditions)s: %(actions)s"),
                conditions=_joined(conds, N_("%(first)s and %(next)s") if rule.match_all
                                   else N_("%(first)s or %(next)s")),
                actions=_joined(acts, N_("%(first)s; %(next)s")))
