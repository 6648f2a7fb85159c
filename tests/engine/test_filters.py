"""The pure filter engine: validation messages, evaluation, the regex time bound."""

from __future__ import annotations

import time

import pytest

from flask_popaccounts.engine import filters as f
from flask_popaccounts.engine import mailview
from flask_popaccounts.engine.filters import RuleInvalid, load_rule
from flask_popaccounts.engine.mailview import MailView
from flask_popaccounts.engine.patterns import RegexRunner

HEAD = (b"From: Ann Example <ann@example.org>\r\nTo: me@example.com\r\n"
        b"Cc: =?utf-8?q?Z=C3=B6e?= <zoe@example.net>\r\n"
        b"Subject: =?utf-8?q?Invoice_f=C3=BCr_March?=\r\nList-Id: <news.example.org>\r\n"
        b"X-Spam-Flag: YES\r\n\r\n")
BODY = (b"Please pay the invoice.\r\n")


def view(head: bytes = HEAD, body: bytes = BODY, size: int = 2000) -> MailView:
    return MailView(head, size, lambda: body)


def rule(conds, acts, match_all=True, rid=1):
    c, a = f.validate(conds, acts, name="r", forward_allowed=lambda x: x == "me@home.example")
    import json
    return load_rule(rid, "r", match_all, json.dumps(c), json.dumps(a))


def test_validation_explains_each_mistake() -> None:
    with pytest.raises(RuleInvalid) as e:
        f.validate([{"field": "subject", "op": "matches", "value": "(a+)+$"},
                    {"field": "header", "op": "contains", "header": "List Id:", "value": "x"},
                    {"field": "size", "op": "over", "value": "big"},
                    {"field": "from", "op": "contains", "value": ""},
                    {"field": "subject", "op": "matches", "value": "(x)\\1"},
                    {"field": "subject", "op": "matches", "value": "[unclosed"}],
                   [{"kind": "move", "value": "Trash"},
                    {"kind": "forward", "value": "stranger@example.org"}], name="")
    p = e.value.problems
    assert p[0] == "Give the rule a name."
    assert "repeated group contains another repeat" in p[1]
    assert "header's name" in p[2]
    assert "whole number of KiB" in p[3]
    assert "enter the text From should contain" in p[4]
    assert "back-references" in p[5]
    assert "not valid" in p[6]
    assert "cannot be moved to Trash" in p[7]
    assert "only to an address you have verified" in p[8]
    with pytest.raises(RuleInvalid) as e:
        f.validate([], [], name="x")
    assert e.value.problems == ["Add at least one condition.", "Add at least one action."]
    with pytest.raises(RuleInvalid, match="longer than 200"):
        f.validate([{"field": "subject", "op": "matches", "value": "a" * 201}],
                   [{"kind": "flag"}], name="x")
    with pytest.raises(RuleInvalid, match="both move"):
        f.validate([{"field": "subject", "op": "is", "value": "a"}],
                   [{"kind": "move", "value": "A"}, {"kind": "delete"}], name="x")


def test_conditions_on_each_field() -> None:
    v = view()
    assert f.rule_matches(rule([{"field": "from", "op": "contains", "value": "ANN@"}],
                               [{"kind": "flag"}]), v, None)
    assert f.rule_matches(rule([{"field": "to", "op": "contains", "value": "zöe"}],
                               [{"kind": "flag"}]), v, None)  # Cc, decoded
    assert f.rule_matches(rule([{"field": "subject", "op": "is", "value": "invoice für march"}],
                               [{"kind": "flag"}]), v, None)
    assert f.rule_matches(rule([{"field": "header", "header": "x-spam-flag", "op": "is",
                                 "value": "yes"}], [{"kind": "flag"}]), v, None)
    assert f.rule_matches(rule([{"field": "body", "op": "contains", "value": "pay the"}],
                               [{"kind": "flag"}]), v, None)
    assert f.rule_matches(rule([{"field": "size", "op": "over", "value": "1"}],
                               [{"kind": "flag"}]), v, None)
    assert not f.rule_matches(rule([{"field": "size", "op": "under", "value": "1"}],
                                   [{"kind": "flag"}]), v, None)
    assert f.rule_matches(rule([{"field": "subject", "op": "not_contains", "value": "zzz"}],
                               [{"kind": "flag"}]), v, None)
    both = [{"field": "subject", "op": "contains", "value": "zzz"},
            {"field": "from", "op": "contains", "value": "ann"}]
    assert not f.rule_matches(rule(both, [{"kind": "flag"}], match_all=True), v, None)
    assert f.rule_matches(rule(both, [{"kind": "flag"}], match_all=False), v, None)


def test_evaluate_folds_actions_and_stops() -> None:
    r1 = rule([{"field": "from", "op": "contains", "value": "ann"}],
              [{"kind": "move", "value": "Bills"}, {"kind": "mark_read"},
               {"kind": "forward", "value": "me@home.example"}, {"kind": "stop"}], rid=1)
    r2 = rule([{"field": "from", "op": "contains", "value": "ann"}], [{"kind": "delete"}], rid=2)
    d = f.evaluate([r1, r2], view())
    assert (d.folder, d.read, d.trash, d.forward_to, d.matched) == (
        "Bills", True, False, ["me@home.example"], [1])
    d = f.evaluate([r2, r1], view())
    assert d.trash and d.matched == [2, 1]


def test_html_body_text_and_bounds() -> None:
    head = (b"From: a@b.example\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/html; charset=utf-8\r\n\r\n")
    text = mailview.body_text(head, b"<p>Hello <b>world</b></p>" + b"x" * 200_000)
    assert "Hello" in text and "<b>" not in text and len(text) <= mailview.BODY_LIMIT


def test_regex_runs_with_a_time_bound() -> None:
    with RegexRunner(timeout=0.3) as rr:
        assert rr.search(r"inv\w+ f.r", "Invoice für March")
        assert not rr.search(r"^zzz", "Invoice")
        # Accepted by the static check (no nested repeat) but polynomial: cut off in time.
        evil = ".*a.*a.*a.*a.*b"
        assert f.regex_problem(evil) is None
        r = rule([{"field": "body", "op": "matches", "value": evil}], [{"kind": "flag"}])
        v = MailView(b"Subject: x\r\n\r\n", 10, lambda: b"a" * 60000)
        start = time.monotonic()
        d = f.evaluate([r], v, rr)
        assert time.monotonic() - start < 2
        assert d.matched == [] and d.errors == ["rule 1: regular expression took too long"]
        assert rr.timeouts == 1
        assert rr.search("march", "Invoice für March")  # a fresh helper after the kill
