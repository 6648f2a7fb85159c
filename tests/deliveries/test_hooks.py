"""The hook registry: its checks, the older keyword hooks folded in, the scanners' verdict."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from flask import Flask

from flask_popaccounts import Hooks, PopAccounts, get_state
from flask_popaccounts.engine.delivery import (
    ScanResult,
    Verdict,
    delivery_id,
    id_header,
)
from flask_popaccounts.engine.types import MessageMeta, RetrievedMessage


def _message(raw: bytes = b"Subject: x\r\n\r\nbody\r\n") -> RetrievedMessage:
    meta = MessageMeta(sent_at=datetime(2025, 1, 1, tzinfo=UTC), sent_at_source="date",
                       from_addr="", to_addrs="", subject="x", message_id="", size=len(raw))
    return RetrievedMessage(uidl="u1", size=len(raw), spool=io.BytesIO(raw), meta=meta)


def _app(**kw: object) -> tuple[Flask, PopAccounts]:
    app = Flask("hooks_test")
    app.config.update(TESTING=True, SECRET_KEY="x", POPACCOUNTS_DATABASE_URI="sqlite://")
    ext = PopAccounts(app, **kw)  # type: ignore[arg-type]
    return app, ext


def test_a_delivery_must_fit_the_protocol_and_scanners_be_callable() -> None:
    with pytest.raises(TypeError, match="delivery"):
        Hooks(delivery=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        Hooks(scanners=["not a function"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="callable"):
        Hooks().scanner("neither")  # type: ignore[arg-type]


def test_quota_and_timezone_keywords_are_hooks_too() -> None:
    def quota(owner: str) -> int:
        return 5

    app, ext = _app(quota=quota, timezone=lambda owner: "Asia/Riyadh")
    assert ext.hooks.quota is quota and get_state(app).quota is quota
    assert ext.hooks.user_timezone("7") == "Asia/Riyadh"
    ext.quota = None  # the attribute hosts and tests set stays a way in
    assert ext.hooks.quota is None and get_state(app).quota is None
    hooks = Hooks(quota=quota)
    with pytest.raises(TypeError, match="twice"):
        PopAccounts(hooks=hooks, quota=lambda owner: 1)
    assert PopAccounts(hooks=hooks, quota=quota).hooks is hooks  # the same one: fine


def test_the_time_zone_hook_is_read_when_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from flask_popaccounts import i18n

    app, ext = _app()
    ext.hooks.timezone = lambda owner: "Asia/Riyadh" if owner == "7" else None
    ext.hooks.display_name = lambda owner: "Alice" if owner == "7" else None

    class User:
        is_authenticated = True

        def get_id(self) -> str:
            return "7"

    monkeypatch.setattr("flask_login.current_user", User())
    with app.test_request_context("/"):
        assert str(i18n.user_timezone()) == "Asia/Riyadh"
    assert ext.hooks.user_display_name("7") == "Alice"
    assert ext.hooks.user_display_name("8") is None


def test_the_strictest_verdict_wins_and_the_spool_is_rewound() -> None:
    hooks = Hooks()
    seen: list[bytes] = []

    @hooks.scanner
    def reads_all(message: RetrievedMessage, *, owner_id: str, account_id: int) -> None:
        seen.append(message.spool.read())  # leaves the spool at its end

    @hooks.scanner
    def junk(message: RetrievedMessage, *, owner_id: str, account_id: int) -> ScanResult:
        seen.append(message.spool.read())
        return ScanResult(Verdict.JUNK, "spam score 9")

    hooks.scanner(lambda message, **kw: ScanResult(Verdict.REJECT, "virus: EICAR"))
    hooks.scanner(lambda message, **kw: ScanResult(Verdict.JUNK, "later junk"))
    message = _message()
    result = hooks.scan(message, owner_id="7", account_id=1)
    assert result == ScanResult(Verdict.REJECT, "virus: EICAR")
    assert seen == [message.spool.getvalue()] * 2 and message.spool.tell() == 0
    assert Hooks().scan(message, owner_id="7", account_id=1).verdict is Verdict.ACCEPT


def test_delivery_ids_are_stable_and_tell_mailboxes_apart() -> None:
    a = delivery_id("1:alice@pop.example", "000000016b090bab")
    assert a == delivery_id("1:alice@pop.example", "000000016b090bab")
    assert len(a) == 32 and a.isalnum()
    assert a != delivery_id("1:alice@pop.example", "000000026b090bab")
    assert a != delivery_id("2:bob@pop.example", "000000016b090bab")
    assert id_header(a) == f"X-PopAccounts-Id: {a}\r\n".encode()
    with pytest.raises(ValueError):
        id_header("x\r\nBcc: someone")
