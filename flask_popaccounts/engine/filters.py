"""Per-account mail filters: the rule model, its validation and its evaluation (pure).

A rule is a list of *conditions* (all must hold, or any one) and a list of *actions*.
Rules are stored as JSON (``conditions_json`` / ``actions_json``); :func:`validate`
turns what the rule editor posted into clean lists or raises :class:`RuleInvalid` whose
``problems`` say, field by field, what is wrong in words a user understands.

Conditions look at: ``from``, ``to`` (To and Cc), ``subject``, ``header`` (any named
header), ``body`` (the text parts, at most :data:`BODY_LIMIT` characters) and ``size``.
Text operators: ``contains`` / ``is`` / ``matches`` (a regular expression) and their
``not_`` variants, case-insensitive; size operators: ``over`` / ``under`` (KiB).

Regular expressions are made safe twice (:mod:`.patterns`): checked when the rule is
saved (length, no nested repeats or back-references) and run in a helper process with a
time bound; a match that runs out of time counts as "does not match" and is reported.
The message itself is seen through a :class:`~.mailview.MailView`, whose inputs are
bounded too (header fields 2,000 characters, body :data:`BODY_LIMIT`).

Actions: ``move`` (to a folder by name, created on demand), ``mark_read``, ``flag``,
``delete`` (to Trash), ``forward`` (to an address) and ``stop`` (no further rules).
:func:`evaluate` folds the matching rules, in order, into one :class:`Decision`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .addresses import check_addr_spec
from .errors import InvalidInput
from .mailview import MailView
from .patterns import RegexRunner, RegexTimeout, regex_problem
from .rulewords import ACTION_LABELS, ENTER_TEXT, FIELD_LABELS, OP_LABELS, describe_text
from .safety import has_control_chars
from .texts import N_, Text

# The message view (mailview) and the regular-expression guard (patterns) are modules of
# their own; this one is the rules: their model, validation and evaluation.
__all__ = [
    "ACTIONS", "ACTION_LABELS", "FIELDS", "FIELD_LABELS", "MAX_ACTIONS", "MAX_CONDITIONS",
    "OP_LABELS", "SIZE_OPS", "TEXT_OPS", "Action", "Condition", "Decision", "Rule",
    "RuleInvalid", "apply_actions", "condition_matches", "describe", "describe_text",
    "evaluate", "load_rule", "needs_regex", "rule_matches", "validate",
]

FIELDS = ("from", "to", "subject", "header", "body", "size")
TEXT_OPS = ("contains", "not_contains", "is", "not_is", "matches", "not_matches")
SIZE_OPS = ("over", "under")
ACTIONS = ("move", "mark_read", "flag", "delete", "forward", "stop")

MAX_CONDITIONS = 20
MAX_ACTIONS = 10
VALUE_MAX_LENGTH = 500
FOLDER_MAX_LENGTH = 200
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")  # RFC 5322 field name
_RESERVED_FOLDERS = {"sent", "trash"}


class RuleInvalid(ValueError):
    """The rule cannot be saved; ``problems`` lists what to fix, in plain words (each a
    :class:`~.texts.Text`: English as a ``str``, translated by the services)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str
    header: str = ""  #: for field "header": the header's name


@dataclass(frozen=True)
class Action:
    kind: str
    value: str = ""  #: folder name (move) or address (forward)


@dataclass(frozen=True)
class Rule:
    id: int
    name: str
    match_all: bool
    conditions: tuple[Condition, ...]
    actions: tuple[Action, ...]


@dataclass
class Decision:
    """What the matching rules decided for one message."""

    folder: str | None = None  #: a folder name to move to (None: stays in the Inbox)
    trash: bool = False  #: delete: goes to Trash (wins over ``folder``)
    read: bool = False
    flagged: bool = False
    forward_to: list[str] = field(default_factory=list)
    matched: list[int] = field(default_factory=list)  #: ids of the rules that matched
    errors: list[str] = field(default_factory=list)  #: e.g. a regex that ran out of time


# -- validation ---------------------------------------------------------------------------


class _Problem(Exception):
    """What is wrong with one condition or action, in words for the rule editor."""

    def __init__(self, text: Text) -> None:
        super().__init__(text)
        self.text = text


def validate(conditions: Iterable[Mapping[str, Any]], actions: Iterable[Mapping[str, Any]], *,
             name: str = "", forward_allowed: Callable[[str], bool] | None = None
             ) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Clean and check a rule; returns (conditions, actions) as JSON-ready lists.

    ``forward_allowed(address)`` says whether forwarding to an address is allowed (the
    services allow verified addresses only); without it every forward is refused.
    Raises :class:`RuleInvalid` listing every problem found.
    """
    problems: list[str] = []
    if not name.strip():
        problems.append(Text(N_("Give the rule a name.")))
    elif len(name) > 200 or has_control_chars(name):
        problems.append(Text(N_("The name must be one line of at most 200 characters.")))
    conds = _clean_conditions(conditions, problems)
    acts = _clean_actions(actions, forward_allowed, problems)
    if problems:
        raise RuleInvalid(problems)
    return conds, acts


def _clean_conditions(conditions: Iterable[Mapping[str, Any]], problems: list[str]
                      ) -> list[dict[str, str]]:
    conds: list[dict[str, str]] = []
    for i, raw in enumerate(conditions, 1):
        try:
            item = _clean_condition(raw)
        except _Problem as problem:
            problems.append(Text(N_("Condition %(num)s: %(problem)s"), num=i,
                                 problem=problem.text))
            continue
        if item is not None:
            conds.append(item)
    if not conds and not any("Condition" in p for p in problems):
        problems.append(Text(N_("Add at least one condition.")))
    if len(conds) > MAX_CONDITIONS:  # (20: the number is written in the words)
        problems.append(Text(N_("A rule has at most 20 conditions.")))
    return conds


def _clean_text(value: Any) -> str:
    return str(value if value is not None else "").strip()


def _clean_condition(raw: Mapping[str, Any]) -> dict[str, str] | None:
    """One row of the editor, cleaned (None: an empty row); raises :class:`_Problem`."""
    fld = _clean_text(raw.get("field"))
    op = _clean_text(raw.get("op"))
    value = str(raw.get("value") or "")
    header = _clean_text(raw.get("header"))
    if fld == "" and value.strip() == "":
        return None
    if fld not in FIELDS:
        raise _Problem(Text(N_("choose what to look at (From, To, Subject...).")))
    if fld == "size":
        if op not in SIZE_OPS:
            raise _Problem(Text(N_("size can only be “is over” or “is under”.")))
        if not value.strip().isdigit() or int(value) > 10 ** 7:
            raise _Problem(Text(N_("the size must be a whole number of KiB (for example 1024 "
                                   "for 1 MiB).")))
        return {"field": fld, "op": op, "value": str(int(value))}
    label = Text(FIELD_LABELS[fld])
    if op not in TEXT_OPS:
        raise _Problem(Text(N_("“%(op)s” does not apply to %(field)s; use contains, is or "
                               "matches."), op=Text(OP_LABELS[op]) if op in OP_LABELS else op,
                            field=label))
    if fld == "header" and not _HEADER_NAME.match(header):
        raise _Problem(Text(N_("enter the header's name, like List-Id or X-Spam-Flag (letters, "
                               "digits and dashes, no colon).")))
    if has_control_chars(value):
        raise _Problem(Text(N_("the value must be one line.")))
    if op.endswith("matches"):
        why = regex_problem(value)
        if why:
            raise _Problem(why)
    else:
        value = value.strip()
        if not value:
            raise _Problem(Text(ENTER_TEXT[op], field=label))
    if len(value) > VALUE_MAX_LENGTH:  # (500)
        raise _Problem(Text(N_("the value is longer than 500 characters.")))
    item = {"field": fld, "op": op, "value": value}
    if fld == "header":
        item["header"] = header
    return item


def _clean_actions(actions: Iterable[Mapping[str, Any]],
                   forward_allowed: Callable[[str], bool] | None, problems: list[str]
                   ) -> list[dict[str, str]]:
    acts: list[dict[str, str]] = []
    seen: set[str] = set()
    for i, raw in enumerate(actions, 1):
        try:
            item = _clean_action(raw, seen, forward_allowed)
        except _Problem as problem:
            problems.append(Text(N_("Action %(num)s: %(problem)s"), num=i, problem=problem.text))
            continue
        if item is not None:
            seen.add(item["kind"])
            acts.append(item)
    if "move" in seen and "delete" in seen:
        problems.append(Text(N_("A rule cannot both move mail to a folder and delete it.")))
    if not acts and not any("Action" in p for p in problems):
        problems.append(Text(N_("Add at least one action.")))
    if len(acts) > MAX_ACTIONS:  # (10)
        problems.append(Text(N_("A rule has at most 10 actions.")))
    return acts


def _clean_action(raw: Mapping[str, Any], seen: set[str],
                  forward_allowed: Callable[[str], bool] | None) -> dict[str, str] | None:
    """One action, cleaned (None: empty, or a repeat that changes nothing); raises _Problem."""
    kind = _clean_text(raw.get("kind"))
    value = _clean_text(raw.get("value"))
    if not kind:
        return None
    if kind not in ACTIONS:
        raise _Problem(Text(N_("unknown action.")))
    if kind in ("move", "forward") and kind in seen:
        raise _Problem(Text(N_("“%(action)s” can appear only once."),
                            action=Text(ACTION_LABELS[kind])))
    if kind == "move":
        _check_folder(value)
    elif kind == "forward":
        value = _check_forward(value, forward_allowed)
    elif kind in seen:
        return None
    else:
        value = ""
    return {"kind": kind, "value": value}


def _check_folder(value: str) -> None:
    if not value or len(value) > FOLDER_MAX_LENGTH or has_control_chars(value) or "/" in value:
        raise _Problem(Text(N_("enter the folder's name (one line, no “/”, at most 200 "
                               "characters); it is created if needed.")))  # (FOLDER_MAX_LENGTH)
    if value.lower() in _RESERVED_FOLDERS:
        raise _Problem(Text(N_("mail cannot be moved to %(folder)s; to delete it, use “Delete "
                               "(move to Trash)”."), folder=value))
    if value.lower() == "inbox":
        raise _Problem(Text(N_("mail arrives in the Inbox anyway; choose another folder.")))


def _check_forward(value: str, forward_allowed: Callable[[str], bool] | None) -> str:
    try:
        value = check_addr_spec(value)
    except InvalidInput:
        raise _Problem(Text(N_("“%(address)s” is not an email address."), address=value)
                       ) from None
    if forward_allowed is None or not forward_allowed(value):
        raise _Problem(Text(N_("mail can be forwarded only to an address you have verified "
                               "(see “Send mail as”); %(address)s is not verified."),
                            address=value))
    return value


def load_rule(rule_id: int, name: str, match_all: bool, conditions_json: str,
              actions_json: str) -> Rule:
    """A stored rule (stored JSON was validated; unknown entries are dropped, not trusted)."""
    conds = tuple(Condition(field=str(c.get("field")), op=str(c.get("op")),
                            value=str(c.get("value", "")), header=str(c.get("header", "")))
                  for c in json.loads(conditions_json or "[]") if isinstance(c, dict)
                  and c.get("field") in FIELDS)
    acts = tuple(Action(kind=str(a.get("kind")), value=str(a.get("value", "")))
                 for a in json.loads(actions_json or "[]") if isinstance(a, dict)
                 and a.get("kind") in ACTIONS)
    return Rule(id=rule_id, name=name, match_all=match_all, conditions=conds, actions=acts)


# -- evaluation -----------------------------------------------------------------------------


def _text_matches(cond: Condition, value: str, regex: RegexRunner | None) -> bool:
    op = cond.op
    negate = op.startswith("not_")
    base = op[4:] if negate else op
    if base == "contains":
        hit = cond.value.casefold() in value.casefold()
    elif base == "is":
        hit = value.strip().casefold() == cond.value.casefold()
    else:
        if regex is None:
            raise RegexTimeout("no regex runner")
        hit = regex.search(cond.value, value)
    return hit != negate


def _addresses_text(view: MailView, names: Sequence[str]) -> str:
    return ", ".join(v for n in names for v in view.headers.get(n, []))


def condition_matches(cond: Condition, view: MailView, regex: RegexRunner | None) -> bool:
    """One condition against one message (raises RegexTimeout for a regex out of time)."""
    if cond.field == "size":
        kib = int(cond.value) * 1024
        return view.size > kib if cond.op == "over" else view.size < kib
    if cond.field == "from":
        value = _addresses_text(view, ("from",))
    elif cond.field == "to":
        value = _addresses_text(view, ("to", "cc"))
    elif cond.field == "subject":
        value = view.header("subject")
    elif cond.field == "header":
        value = view.header(cond.header)
    else:
        value = view.body()
    return _text_matches(cond, value, regex)


def rule_matches(rule: Rule, view: MailView, regex: RegexRunner | None,
                 errors: list[str] | None = None) -> bool:
    """Whether the rule's conditions hold (all or any); a timed-out regex is "no match"."""
    if not rule.conditions:
        return False
    results = []
    for cond in rule.conditions:
        try:
            ok = condition_matches(cond, view, regex)
        except RegexTimeout:
            if errors is not None:
                errors.append(f"rule {rule.id}: regular expression took too long")
            ok = False
        results.append(ok)
        if rule.match_all and not ok:
            return False
        if not rule.match_all and ok:
            return True
    return all(results) if rule.match_all else any(results)


def apply_actions(rule: Rule, decision: Decision) -> bool:
    """Fold one matching rule's actions into the decision; returns True for "stop"."""
    decision.matched.append(rule.id)
    stop = False
    for action in rule.actions:
        if action.kind == "move":
            decision.folder = action.value
        elif action.kind == "delete":
            decision.trash = True
        elif action.kind == "mark_read":
            decision.read = True
        elif action.kind == "flag":
            decision.flagged = True
        elif action.kind == "forward":
            if action.value.lower() not in (a.lower() for a in decision.forward_to):
                decision.forward_to.append(action.value)
        elif action.kind == "stop":
            stop = True
    return stop


def evaluate(rules: Sequence[Rule], view: MailView, regex: RegexRunner | None = None
             ) -> Decision:
    """Run the rules in order on one message; the matching ones decide, until a "stop"."""
    decision = Decision()
    for rule in rules:
        if rule_matches(rule, view, regex, decision.errors) and apply_actions(rule, decision):
            break
    return decision


def needs_regex(rules: Sequence[Rule]) -> bool:
    return any(c.op.endswith("matches") for r in rules for c in r.conditions)


def describe(rule: Rule) -> str:
    """The summary in English (:func:`describe_text`; pages translate that one)."""
    return str(describe_text(rule))
