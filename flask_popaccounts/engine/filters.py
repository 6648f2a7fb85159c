"""Per-account mail filters: the rule model, its validation and its evaluation (pure).

A rule is a list of *conditions* (all must hold, or any one) and a list of *actions*.
Rules are stored as JSON (``conditions_json`` / ``actions_json``); :func:`validate`
turns what the rule editor posted into clean lists or raises :class:`RuleInvalid` whose
``problems`` say, field by field, what is wrong in words a user understands.

Conditions look at: ``from``, ``to`` (To and Cc), ``subject``, ``header`` (any named
header), ``body`` (the text parts, at most :data:`BODY_LIMIT` characters) and ``size``.
Text operators: ``contains`` / ``is`` / ``matches`` (a regular expression) and their
``not_`` variants, case-insensitive; size operators: ``over`` / ``under`` (KiB).

Regular expressions are made safe twice:

1. at validation, a pattern is limited to :data:`REGEX_MAX_LENGTH` characters and
   refused when it has a construct known to backtrack catastrophically (a repeated
   group that itself contains a repeat, such as ``(a+)+``; back-references);
2. at evaluation, every match runs in a helper process (:class:`RegexRunner`) with a
   time bound (:data:`REGEX_TIMEOUT` seconds); a match that runs out of time is killed
   with its process and counts as "does not match" (and is reported), so a pattern
   the static check let through still cannot stall a fetch. Inputs are bounded too
   (header fields 2,000 characters, body :data:`BODY_LIMIT`).

Actions: ``move`` (to a folder by name, created on demand), ``mark_read``, ``flag``,
``delete`` (to Trash), ``forward`` (to an address) and ``stop`` (no further rules).
:func:`evaluate` folds the matching rules, in order, into one :class:`Decision`.
"""

from __future__ import annotations

import email.policy
import json
import re
import select
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.parser import BytesParser
from typing import Any

from .addresses import check_addr_spec
from .parse import _decode_value, _undo_surrogates
from .safety import has_control_chars

FIELDS = ("from", "to", "subject", "header", "body", "size")
TEXT_OPS = ("contains", "not_contains", "is", "not_is", "matches", "not_matches")
SIZE_OPS = ("over", "under")
ACTIONS = ("move", "mark_read", "flag", "delete", "forward", "stop")

FIELD_LABELS = {"from": "From", "to": "To or Cc", "subject": "Subject", "header": "Header",
                "body": "Body text", "size": "Size (KiB)"}
OP_LABELS = {"contains": "contains", "not_contains": "does not contain", "is": "is",
             "not_is": "is not", "matches": "matches (regular expression)",
             "not_matches": "does not match", "over": "is over", "under": "is under"}
ACTION_LABELS = {"move": "Move to folder", "mark_read": "Mark as read", "flag": "Flag",
                 "delete": "Delete (move to Trash)", "forward": "Forward to",
                 "stop": "Stop processing more rules"}

MAX_CONDITIONS = 20
MAX_ACTIONS = 10
VALUE_MAX_LENGTH = 500
REGEX_MAX_LENGTH = 200
REGEX_TIMEOUT = 0.25  #: seconds one regular-expression match may take
BODY_LIMIT = 64 * 1024  #: characters of body text a condition looks at
BODY_READ_LIMIT = 512 * 1024  #: raw bytes after the header section read to find them
FOLDER_MAX_LENGTH = 200
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")  # RFC 5322 field name
_RESERVED_FOLDERS = {"sent", "trash"}


class RuleInvalid(ValueError):
    """The rule cannot be saved; ``problems`` lists what to fix, in plain words."""

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


# -- validation -----------------------------------------------------------------------------


def regex_problem(pattern: str) -> str | None:
    """Why a pattern is refused (None when it is acceptable)."""
    if not pattern:
        return "the regular expression is empty"
    if len(pattern) > REGEX_MAX_LENGTH:
        return f"the regular expression is longer than {REGEX_MAX_LENGTH} characters"
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"the regular expression is not valid: {exc}"
    import importlib

    # the stdlib's own parser (re._parser; sre_parse before 3.11): the real structure
    sre_parse: Any = importlib.import_module("re._parser")

    try:
        tree = sre_parse.parse(pattern)
    except Exception as exc:  # pragma: no cover - compile() succeeded above
        return f"the regular expression is not valid: {exc}"
    repeats = {sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT, getattr(sre_parse, "POSSESSIVE_REPEAT",
                                                                     sre_parse.MAX_REPEAT)}

    def walk(items: Any, inside_repeat: bool) -> str | None:
        for op, av in items:
            if op in (sre_parse.GROUPREF, sre_parse.GROUPREF_EXISTS):
                return "back-references (\\1, (?P=name)) are not allowed"
            if op in repeats:
                lo, hi, sub = av
                if inside_repeat and hi != lo:
                    return ("a repeated group contains another repeat (like (a+)+), "
                            "which can take forever on some mail")
                found = walk(sub, inside_repeat or hi > 1)
                if found:
                    return found
            elif op in (sre_parse.SUBPATTERN, sre_parse.ATOMIC_GROUP
                        if hasattr(sre_parse, "ATOMIC_GROUP") else sre_parse.SUBPATTERN):
                sub = av[-1]
                found = walk(sub, inside_repeat)
                if found:
                    return found
            elif op == sre_parse.BRANCH:
                for sub in av[1]:
                    found = walk(sub, inside_repeat)
                    if found:
                        return found
            elif op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
                found = walk(av[1], inside_repeat)
                if found:
                    return found
        return None

    return walk(tree, False)


def _clean_text(value: Any) -> str:
    return str(value if value is not None else "").strip()


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
        problems.append("Give the rule a name.")
    elif len(name) > 200 or has_control_chars(name):
        problems.append("The name must be one line of at most 200 characters.")
    conds: list[dict[str, str]] = []
    for i, raw in enumerate(conditions, 1):
        fld = _clean_text(raw.get("field"))
        op = _clean_text(raw.get("op"))
        value = str(raw.get("value") or "")
        header = _clean_text(raw.get("header"))
        where = f"Condition {i}"
        if fld == "" and value.strip() == "":
            continue  # an empty row of the editor
        if fld not in FIELDS:
            problems.append(f"{where}: choose what to look at (From, To, Subject...).")
            continue
        label = FIELD_LABELS[fld]
        if fld == "size":
            if op not in SIZE_OPS:
                problems.append(f"{where}: size can only be “is over” or “is under”.")
                continue
            if not value.strip().isdigit() or int(value) > 10 ** 7:
                problems.append(f"{where}: the size must be a whole number of KiB "
                                f"(for example 1024 for 1 MiB).")
                continue
            conds.append({"field": fld, "op": op, "value": str(int(value))})
            continue
        if op not in TEXT_OPS:
            problems.append(f"{where}: “{OP_LABELS.get(op, op)}” does not apply to {label}; "
                            f"use contains, is or matches.")
            continue
        if fld == "header":
            if not _HEADER_NAME.match(header):
                problems.append(f"{where}: enter the header's name, like List-Id or "
                                f"X-Spam-Flag (letters, digits and dashes, no colon).")
                continue
        if has_control_chars(value):
            problems.append(f"{where}: the value must be one line.")
            continue
        if op.endswith("matches"):
            why = regex_problem(value)
            if why:
                problems.append(f"{where}: {why}.")
                continue
        else:
            value = value.strip()
            if not value:
                problems.append(f"{where}: enter the text {label} should "
                                f"{OP_LABELS[op].replace('does not ', 'not ')}.")
                continue
        if len(value) > VALUE_MAX_LENGTH:
            problems.append(f"{where}: the value is longer than {VALUE_MAX_LENGTH} characters.")
            continue
        item = {"field": fld, "op": op, "value": value}
        if fld == "header":
            item["header"] = header
        conds.append(item)
    if not conds and not any("Condition" in p for p in problems):
        problems.append("Add at least one condition.")
    if len(conds) > MAX_CONDITIONS:
        problems.append(f"A rule has at most {MAX_CONDITIONS} conditions.")

    acts: list[dict[str, str]] = []
    seen: set[str] = set()
    for i, raw in enumerate(actions, 1):
        kind = _clean_text(raw.get("kind"))
        value = _clean_text(raw.get("value"))
        where = f"Action {i}"
        if not kind:
            continue
        if kind not in ACTIONS:
            problems.append(f"{where}: unknown action.")
            continue
        if kind in ("move", "forward") and kind in seen:
            problems.append(f"{where}: “{ACTION_LABELS[kind]}” can appear only once.")
            continue
        if kind == "move":
            if (not value or len(value) > FOLDER_MAX_LENGTH or has_control_chars(value)
                    or "/" in value):
                problems.append(f"{where}: enter the folder's name (one line, no “/”, at most "
                                f"{FOLDER_MAX_LENGTH} characters); it is created if needed.")
                continue
            if value.lower() in _RESERVED_FOLDERS:
                problems.append(f"{where}: mail cannot be moved to {value}; to delete it, "
                                f"use “Delete (move to Trash)”.")
                continue
            if value.lower() == "inbox":
                problems.append(f"{where}: mail arrives in the Inbox anyway; choose another "
                                f"folder.")
                continue
        if kind == "forward":
            try:
                value = check_addr_spec(value)
            except Exception:
                problems.append(f"{where}: “{value}” is not an email address.")
                continue
            if forward_allowed is None or not forward_allowed(value):
                problems.append(f"{where}: mail can be forwarded only to an address you have "
                                f"verified (see “Send mail as”); {value} is not verified.")
                continue
        if kind not in ("move", "forward"):
            value = ""
            if kind in seen:
                continue
        seen.add(kind)
        acts.append({"kind": kind, "value": value})
    if "move" in seen and "delete" in seen:
        problems.append("A rule cannot both move mail to a folder and delete it.")
    if not acts and not any("Action" in p for p in problems):
        problems.append("Add at least one action.")
    if len(acts) > MAX_ACTIONS:
        problems.append(f"A rule has at most {MAX_ACTIONS} actions.")
    if problems:
        raise RuleInvalid(problems)
    return conds, acts


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


# -- the message as conditions see it ----------------------------------------------------------


class MailView:
    """The parts of one message that conditions look at, computed lazily.

    ``header_bytes``: the header section; ``body_source()``: returns the raw bytes
    after it (bounded by the caller), only called when a rule looks at the body.
    """

    def __init__(self, header_bytes: bytes, size: int,
                 body_source: Callable[[], bytes] | None = None) -> None:
        self.header_bytes = header_bytes
        self.size = size
        self._body_source = body_source
        self._headers: dict[str, list[str]] | None = None
        self._body: str | None = None

    @property
    def headers(self) -> dict[str, list[str]]:
        """Every header field, by lower-case name, decoded (RFC 2047), in order."""
        if self._headers is None:
            self._headers = all_headers(self.header_bytes)
        return self._headers

    def header(self, name: str) -> str:
        return ", ".join(self.headers.get(name.lower(), []))

    def body(self) -> str:
        if self._body is None:
            raw = self._body_source() if self._body_source is not None else b""
            self._body = body_text(self.header_bytes, raw)
        return self._body


def all_headers(header_bytes: bytes) -> dict[str, list[str]]:
    """Every field of a header section, unfolded and decoded; never raises."""
    text = header_bytes.decode("ascii", "surrogateescape")
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in re.split(r"\r?\n", text):
        if not line:
            break
        if line[0] in " \t":
            if current is not None:
                current[-1] += line
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not name or " " in name:
            current = None
            continue
        current = out.setdefault(name.lower(), [])
        current.append(value.strip())
    defects: list[str] = []
    for key, values in out.items():
        decoded = []
        for v in values:
            try:
                decoded.append(" ".join(_decode_value(key, v, defects).split())[:2000])
            except Exception:
                decoded.append(_undo_surrogates(v)[:2000])
        out[key] = decoded
    return out


def body_text(header_bytes: bytes, body: bytes, limit: int = BODY_LIMIT) -> str:
    """The text of a message's text parts (plain preferred, HTML tags dropped), bounded."""
    try:
        msg = BytesParser(policy=email.policy.default).parsebytes(header_bytes + body)
        texts: list[str] = []
        total = 0
        for part in msg.walk():
            if part.is_multipart() or part.get_content_maintype() != "text":
                continue
            if part.get_content_disposition() == "attachment":
                continue
            try:
                content = part.get_content()
            except Exception:
                payload = part.get_payload(decode=True)
                content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) \
                    else str(payload)
            if part.get_content_subtype() == "html":
                content = re.sub(r"<[^>]{0,2000}>", " ", str(content))
            texts.append(str(content))
            total += len(texts[-1])
            if total >= limit:
                break
        return "\n".join(texts)[:limit]
    except Exception:
        return body[:limit].decode("utf-8", "replace")


# -- regular expressions with a time bound ------------------------------------------------------

_HELPER = r"""
import json, re, sys
for line in sys.stdin:
    req = json.loads(line)
    try:
        m = re.search(req["p"], req["t"], re.IGNORECASE) is not None
        out = {"m": m}
    except Exception as exc:
        out = {"e": str(exc)}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
"""


class RegexTimeout(Exception):
    """A regular-expression match ran out of time (its helper process was killed)."""


class RegexRunner:
    """Runs ``re.search`` in a helper process so that a match can be cut off in time.

    The helper is started on first use and reused; a match that takes longer than
    ``timeout`` seconds kills it (the next match starts a new one). Not thread-safe:
    one runner per fetch. Close it (or use it as a context manager) when done.
    """

    def __init__(self, timeout: float = REGEX_TIMEOUT) -> None:
        self.timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self.timeouts = 0

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _HELPER], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True)
        return self._proc

    def search(self, pattern: str, text: str) -> bool:
        """Whether ``pattern`` matches ``text`` (case-insensitive); raises RegexTimeout."""
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps({"p": pattern, "t": text}).encode() + b"\n")
            proc.stdin.flush()
        except OSError:
            self.close()
            raise RegexTimeout("the regex helper stopped") from None
        fd = proc.stdout.fileno()
        ready, _w, _x = select.select([fd], [], [], self.timeout)
        if not ready:
            self.timeouts += 1
            self.close()
            raise RegexTimeout(f"no answer in {self.timeout}s")
        line = proc.stdout.readline()
        if not line:
            self.close()
            raise RegexTimeout("the regex helper stopped")
        answer = json.loads(line)
        return bool(answer.get("m"))

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.kill()
            except OSError:
                pass
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()

    def __enter__(self) -> RegexRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten runner must not leave a process behind
        if getattr(self, "_proc", None) is not None:
            self.close()


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


def needs_body(rules: Sequence[Rule]) -> bool:
    return any(c.field == "body" for r in rules for c in r.conditions)


def needs_regex(rules: Sequence[Rule]) -> bool:
    return any(c.op.endswith("matches") for r in rules for c in r.conditions)


def describe(rule: Rule) -> str:
    """A one-line summary for the list page."""
    parts = []
    for c in rule.conditions:
        what = FIELD_LABELS.get(c.field, c.field)
        if c.field == "header":
            what = c.header
        parts.append(f"{what} {OP_LABELS.get(c.op, c.op)} “{c.value}”")
    joined = (" and " if rule.match_all else " or ").join(parts)
    acts = []
    for a in rule.actions:
        acts.append(ACTION_LABELS[a.kind] + (f" {a.value}" if a.value else ""))
    return f"If {joined}: " + "; ".join(acts)
