"""Regular expressions in filter rules, made safe twice (pure, standard library only).

1. :func:`regex_problem`, when a rule is saved: a pattern is limited to
   :data:`REGEX_MAX_LENGTH` characters and refused when it has a construct known to
   backtrack catastrophically (a repeated group that itself contains a repeat, such as
   ``(a+)+``; back-references);
2. :class:`RegexRunner`, when mail is filtered: every match runs in a helper process
   with a time bound (:data:`REGEX_TIMEOUT` seconds); a match that runs out of time is
   killed with its process (:class:`RegexTimeout`), so a pattern the static check let
   through still cannot stall a fetch.
"""

from __future__ import annotations

import importlib
import json
import re
import select
import subprocess
import sys
from typing import Any

from .texts import N_, Text

REGEX_MAX_LENGTH = 200
REGEX_TIMEOUT = 0.25  #: seconds one regular-expression match may take

# The standard library's own parser of patterns: the structure ``re`` really compiles.
_sre_parse: Any = importlib.import_module("re._parser")
_REPEATS = {_sre_parse.MAX_REPEAT, _sre_parse.MIN_REPEAT,
            getattr(_sre_parse, "POSSESSIVE_REPEAT", _sre_parse.MAX_REPEAT)}
_GROUPS = {_sre_parse.SUBPATTERN, getattr(_sre_parse, "ATOMIC_GROUP", _sre_parse.SUBPATTERN)}
_NESTED_REPEAT = N_("a repeated group contains another repeat (like (a+)+), which can take "
                    "forever on some mail.")


def regex_problem(pattern: str) -> Text | None:
    """Why a pattern is refused, one sentence for the rule editor (None: acceptable)."""
    if not pattern:
        return Text(N_("the regular expression is empty."))
    if len(pattern) > REGEX_MAX_LENGTH:  # (200: the number is written in the words)
        return Text(N_("the regular expression is longer than 200 characters."))
    try:
        re.compile(pattern)
        tree = _sre_parse.parse(pattern)
    except Exception as exc:  # re.error, or anything the parser may say (in English)
        return Text(N_("the regular expression is not valid: %(reason)s."), reason=str(exc))
    return _structure_problem(tree, inside_repeat=False)


def _structure_problem(items: Any, inside_repeat: bool) -> Text | None:
    """A back-reference, or a repeat inside a repeat, anywhere in a parsed pattern."""
    for op, av in items:
        if op in (_sre_parse.GROUPREF, _sre_parse.GROUPREF_EXISTS):
            return Text(N_("back-references (\\1, (?P=name)) are not allowed."))
        if op in _REPEATS:
            lo, hi, sub = av
            if inside_repeat and hi != lo:
                return Text(_NESTED_REPEAT)
            subs, nested = [sub], inside_repeat or hi > 1
        elif op in _GROUPS:
            subs, nested = [av[-1]], inside_repeat
        elif op == _sre_parse.BRANCH:
            subs, nested = list(av[1]), inside_repeat
        elif op in (_sre_parse.ASSERT, _sre_parse.ASSERT_NOT):
            subs, nested = [av[1]], inside_repeat
        else:
            continue
        for sub in subs:
            found = _structure_problem(sub, nested)
            if found:
                return found
    return None


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
        """Stop the helper process (a later :meth:`search` starts a new one)."""
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
