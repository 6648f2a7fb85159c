"""Filters and the vacation reply at fetch time, against a real Dovecot and aiosmtpd."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select, update

from flask_popaccounts.services import fetching, filtering, outbox, vacation
from flask_popaccounts.storage import mailstore as store
from flask_popaccounts.storage.models import (
    Filter,
    Folder,
    Message,
    OutboxItem,
    VacationReplied,
)
from tests.support.dovecot import Dovecot
from tests.support.smtpd import SMTPServers

from .conftest import db, mail, setup_account


def add_rule(app: Flask, account_id: int, name: str, conds: list[dict[str, str]],
             acts: list[dict[str, str]], match_all: bool = True) -> int:
    with db(app) as s:
        acc = s.get(filtering.Account, account_id)
        return filtering.save_rule(s, acc, name=name, match_all=match_all, enabled=True,
                                   conditions=conds, actions=acts).id


def folder_of(app: Flask, account_id: int) -> dict[str, tuple[str, bool, bool]]:
    """subject -> (folder name, read, flagged)"""
    with db(app) as s:
        rows = s.execute(select(Message.subject, Folder.name, Message.is_read, Message.is_flagged)
                         .join(Folder, Folder.id == Message.folder_id)
                         .where(Message.account_id == account_id)).all()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_filters_move_flag_read_and_forward_real_mail(
        send_app: Flask, dovecot: Dovecot, smtpd: SMTPServers,
        new_user: tuple[str, str]) -> None:
    user, pw = new_user
    aid = setup_account(send_app, dovecot, smtpd, user, pw)
    me = f"{user}@example.com"
    add_rule(send_app, aid, "Bills", [{"field": "subject", "op": "contains", "value": "invoice"}],
             [{"kind": "move", "value": "Bills"}, {"kind": "mark_read"},
              {"kind": "forward", "value": "me@home.example"}, {"kind": "stop"}])
    add_rule(send_app, aid, "Lists", [{"field": "header", "header": "List-Id", "op": "contains",
                                       "value": "news.example"}],
             [{"kind": "flag"}, {"kind": "move", "value": "News"}])
    add_rule(send_app, aid, "Spam", [{"field": "from", "op": "matches", "value": r"@spam\d+\."},
                                     {"field": "size", "op": "over", "value": "100000"}],
             [{"kind": "delete"}], match_all=False)
    add_rule(send_app, aid, "Never", [{"field": "subject", "op": "contains", "value": "invoice"}],
             [{"kind": "flag"}])  # after a "stop": must not apply to invoices
    dovecot.deliver_many(user, [
        mail(1, me, subject="Invoice 42"),
        mail(2, me, subject="Weekly news", extra="List-Id: Our news <news.example.org>\r\n"),
        mail(3, me, subject="Buy now", frm="x@spam7.example"),
        mail(4, me, subject="Hello there"),
    ])
    with send_app.app_context():
        report = fetching.fetch_account(send_app, aid)
    assert report.stored == 4
    assert folder_of(send_app, aid) == {
        "Invoice 42": ("Bills", True, False),
        "Weekly news": ("News", False, True),
        "Buy now": ("Trash", False, False),
        "Hello there": ("Inbox", False, False),
    }
    fwd = [r for r in smtpd.received(rcpt="me@home.example") if r.login == user]
    assert len(fwd) == 1
    got = fwd[0]
    assert got.mail_from == me and got.login == user and got.port == smtpd.submission_port
    msg = got.message
    assert msg["Subject"] == "Fwd: Invoice 42" and msg["From"].addresses[0].addr_spec == me
    attached = [p for p in msg.iter_attachments() if p.get_content_type() == "message/rfc822"]
    assert attached and attached[0].get_content()["Subject"] == "Invoice 42"
    with db(send_app) as s:
        items = outbox.outbox_items(s, aid)
        assert [(i.kind, i.state, i.attempts) for i in items] == [("forward", "sent", 1)]
    # nothing twice: a second fetch stores nothing and forwards nothing
    with send_app.app_context():
        assert fetching.fetch_account(send_app, aid).stored == 0
    assert len([r for r in smtpd.received(rcpt="me@home.example") if r.login == user]) == 1

    # run on existing mail: a new rule, applied to what is stored (Trash/Sent left alone)
    rid = add_rule(send_app, aid, "Later", [{"field": "body", "op": "contains",
                                             "value": "just a NOTE"}],
                   [{"kind": "move", "value": "Later"}, {"kind": "flag"},
                    {"kind": "forward", "value": "me@home.example"}])
    with db(send_app) as s:
        rule = s.get(Filter, rid)
        assert filtering.run_on_existing(s, aid, rule) == 3  # not the one in Trash
    after = folder_of(send_app, aid)
    assert after["Hello there"] == ("Later", False, True)
    assert after["Buy now"] == ("Trash", False, False)
    assert len([r for r in smtpd.received(rcpt="me@home.example")
                if r.login == user]) == 1  # existing mail is not forwarded


def test_a_failed_commit_applies_no_filter_then_the_refetch_applies_it_once(
        send_app: Flask, dovecot: Dovecot, smtpd: SMTPServers, new_user: tuple[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    user, pw = new_user
    aid = setup_account(send_app, dovecot, smtpd, user, pw)
    me = f"{user}@example.com"
    add_rule(send_app, aid, "Fwd", [{"field": "subject", "op": "contains", "value": "report"}],
             [{"kind": "move", "value": "Reports"},
              {"kind": "forward", "value": "me@home.example"}])
    dovecot.deliver_many(user, [mail(i, me, subject=f"Report {i}") for i in range(3)])
    real_commit = store.SqlSink.commit

    def failing_commit(self: store.SqlSink) -> None:
        self._flush()  # everything is staged and flushed: then the disk "fails"
        self.rollback()
        raise OSError("disk full")

    monkeypatch.setattr(store.SqlSink, "commit", failing_commit)
    with send_app.app_context(), pytest.raises(OSError):
        fetching.fetch_account(send_app, aid)
    with db(send_app) as s:
        assert s.scalars(select(Message).where(Message.account_id == aid)).all() == []
        assert outbox.outbox_items(s, aid) == []
        assert s.scalar(select(Folder).where(Folder.account_id == aid,
                                             Folder.name == "Reports")) is None
    assert [r for r in smtpd.received(rcpt="me@home.example") if r.mail_from == me] == []
    monkeypatch.setattr(store.SqlSink, "commit", real_commit)
    with send_app.app_context():
        assert fetching.fetch_account(send_app, aid).stored == 3
    assert {k: v[0] for k, v in folder_of(send_app, aid).items()} == {
        f"Report {i}": "Reports" for i in range(3)}
    subjects = sorted(r.message["Subject"] for r in smtpd.received(rcpt="me@home.example")
                      if r.mail_from == me)
    assert subjects == ["Fwd: Report 0", "Fwd: Report 1", "Fwd: Report 2"]


@pytest.mark.parametrize("kill_at", [3, 5])
def test_sigkill_mid_fetch_never_half_applies_a_filter(
        send_app: Flask, dovecot: Dovecot, smtpd: SMTPServers, new_user: tuple[str, str],
        kill_at: int) -> None:
    user, pw = new_user
    aid = setup_account(send_app, dovecot, smtpd, user, pw)
    me = f"{user}@example.com"
    add_rule(send_app, aid, "Fwd", [{"field": "subject", "op": "contains", "value": "item"}],
             [{"kind": "move", "value": "Items"}, {"kind": "mark_read"},
              {"kind": "forward", "value": "me@home.example"}])
    dovecot.deliver_many(user, [mail(i, me, subject=f"Item {i}") for i in range(6)])
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in send_app.config.items()
              if k.startswith("POPACCOUNTS_") and isinstance(v, (str, int, float, bool, tuple))
              and k != "POPACCOUNTS_SECRET_KEYS"}
    config["POPACCOUNTS_SECRET_KEYS"] = send_app.config.get("POPACCOUNTS_SECRET_KEYS")
    config["SECRET_KEY"] = send_app.config["SECRET_KEY"]
    tmp = Path(send_app.instance_path).parent
    proc = subprocess.run([sys.executable, "-m", "tests.filters.kill_worker", str(tmp), str(aid),
                           str(kill_at), json.dumps(config)], capture_output=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    # After the kill: every stored message has exactly its filter effects and one
    # pending forward; nothing was sent (delivery comes after the fetch).
    with db(send_app) as s:
        stored = s.execute(select(Message.id, Message.is_read, Folder.name)
                           .join(Folder, Folder.id == Message.folder_id)
                           .where(Message.account_id == aid)).all()
        items = outbox.outbox_items(s, aid)
    assert 0 < len(stored) < 6 and len(stored) % 2 == 0  # whole groups of 2 only
    assert all(r.is_read and r.name == "Items" for r in stored)
    assert sorted(i.message_id for i in items) == sorted(r.id for r in stored)
    assert all(i.state == "pending" for i in items)
    forwarded_before = [r for r in smtpd.received(rcpt="me@home.example") if r.mail_from == me]
    assert forwarded_before == []
    # The next fetch stores the rest, filtered once, and sends each forward once.
    with send_app.app_context():
        assert fetching.fetch_account(send_app, aid).stored == 6 - len(stored)
    assert folder_of(send_app, aid) == {f"Item {i}": ("Items", True, False) for i in range(6)}
    subjects = sorted(r.message["Subject"] for r in smtpd.received(rcpt="me@home.example")
                      if r.mail_from == me)
    assert subjects == [f"Fwd: Item {i}" for i in range(6)]
    with db(send_app) as s:
        assert [i.state for i in outbox.outbox_items(s, aid)] == ["sent"] * 6
    assert outbox.deliver_outbox(send_app) == 0  # and never again


def test_a_claimed_send_is_never_repeated_and_a_transient_failure_is_retried(
        send_app: Flask, dovecot: Dovecot, smtpd: SMTPServers, new_user: tuple[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    user, pw = new_user
    aid = setup_account(send_app, dovecot, smtpd, user, pw)
    me = f"{user}@example.com"
    add_rule(send_app, aid, "Fwd", [{"field": "subject", "op": "is", "value": "once"}],
             [{"kind": "forward", "value": "me@home.example"}])
    dovecot.deliver(user, mail(1, me, subject="once"))
    from flask_popaccounts.engine import smtp
    from flask_popaccounts.engine.errors import ConnectionFailed

    calls: list[int] = []

    def down(*a: object, **kw: object) -> None:
        calls.append(1)
        raise ConnectionFailed(detail="test: relay down")

    monkeypatch.setattr(smtp, "send", down)
    with send_app.app_context():
        fetching.fetch_account(send_app, aid)
    with db(send_app) as s:
        (item,) = outbox.outbox_items(s, aid)
        assert (item.state, item.attempts) == ("pending", 1)
        assert item.last_error and item.last_error.startswith("connection_failed")
        assert item.next_attempt_at is not None
    monkeypatch.undo()
    assert outbox.deliver_outbox(send_app) == 0  # not before its back-off
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    assert outbox.deliver_outbox(send_app, aid, now=later) == 1
    assert len([r for r in smtpd.received(rcpt="me@home.example") if r.mail_from == me]) == 1
    # a row left "sending" by a crash is not sent again
    with db(send_app) as s:
        s.execute(update(OutboxItem).where(OutboxItem.account_id == aid)
                  .values(state="sending"))
        s.commit()
    assert outbox.deliver_outbox(send_app, aid, now=later) == 0


# -- vacation ------------------------------------------------------------------------------------


def set_vacation(app: Flask, account_id: int, *, days: int = 7, start: str = "", end: str = ""
                 ) -> None:
    today = datetime.now(timezone.utc).date()
    with db(app) as s:
        acc = s.get(filtering.Account, account_id)
        vacation.save_vacation(s, acc, vacation.VacationInput(
            enabled=True, starts_on=start or str(today - timedelta(days=1)),
            ends_on=end or str(today + timedelta(days=3)), subject="",
            body="I am away until Monday.", interval_days=days))


def replies(smtpd: SMTPServers, to: str) -> list:
    return [r for r in smtpd.received(rcpt=to) if r.message["Auto-Submitted"]]


def test_vacation_replies_once_per_sender_and_never_to_lists_bulk_or_robots(
        send_app: Flask, dovecot: Dovecot, smtpd: SMTPServers,
        new_user: tuple[str, str]) -> None:
    user, pw = new_user
    aid = setup_account(send_app, dovecot, smtpd, user, pw, forward_to="")
    me = f"{user}@example.com"
    set_vacation(send_app, aid, days=7)
    bob = f"bob-{user}@example.org"
    dovecot.deliver_many(user, [
        mail(1, me, frm=f"Bob <{bob}>", subject="Lunch?"),
        mail(2, me, frm=f"Bob <{bob}>", subject="Lunch? (again)"),
        mail(3, me, frm=f"list-{user}@example.org", extra="List-Id: <l.example.org>\r\n"),
        mail(4, me, frm=f"bulk-{user}@example.org", extra="Precedence: bulk\r\n"),
        mail(5, me, frm=f"auto-{user}@example.org", extra="Auto-Submitted: auto-generated\r\n"),
        mail(6, me, frm="MAILER-DAEMON@example.org"),
        mail(7, f"someone-{user}@example.org", frm=f"bcc-{user}@example.org"),
    ])
    with send_app.app_context():
        assert fetching.fetch_account(send_app, aid).stored == 7
    got = [r for r in smtpd.received() if r.login == user]
    assert [r.rcpt_tos for r in got] == [[bob]]
    reply = got[0]
    assert reply.mail_from == "<>"  # MAIL FROM:<>, the null envelope sender (as aiosmtpd keeps it)
    msg = reply.message
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Subject"] == "Re: Lunch?" and msg["From"].addresses[0].addr_spec == me
    assert msg["In-Reply-To"].startswith("<msg-1-")
    assert "away until Monday" in msg.get_content()
    # within N days: no second reply
    dovecot.deliver(user, mail(8, me, frm=bob, subject="Still there?"))
    with send_app.app_context():
        assert fetching.fetch_account(send_app, aid).stored == 1
    assert len(replies(smtpd, bob)) == 1
    # N days later: one more
    with db(send_app) as s:
        s.execute(update(VacationReplied).where(VacationReplied.account_id == aid).values(
            last_replied_at=datetime.now(timezone.utc) - timedelta(days=8)))
        s.commit()
    dovecot.deliver(user, mail(9, me, frm=bob, subject="Back yet?"))
    with send_app.app_context():
        fetching.fetch_account(send_app, aid)
    assert [r.message["Subject"] for r in replies(smtpd, bob)] == ["Re: Lunch?", "Re: Back yet?"]


def test_vacation_outside_its_dates_sends_nothing(
        send_app: Flask, dovecot: Dovecot, smtpd: SMTPServers,
        new_user: tuple[str, str]) -> None:
    user, pw = new_user
    aid = setup_account(send_app, dovecot, smtpd, user, pw, forward_to="")
    today = datetime.now(timezone.utc).date()
    set_vacation(send_app, aid, start=str(today - timedelta(days=10)),
                 end=str(today - timedelta(days=2)))
    dovecot.deliver(user, mail(1, f"{user}@example.com", frm=f"carol-{user}@example.org"))
    with send_app.app_context():
        assert fetching.fetch_account(send_app, aid).stored == 1
    assert [r for r in smtpd.received() if r.login == user] == []
