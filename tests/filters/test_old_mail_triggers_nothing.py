"""Old mail triggers no forward and no vacation reply; forwards carry a loop marker
(issue 11 item 20). Real fetches from Dovecot, what aiosmtpd received.

The rule (engine/autoreply.arrival_time): a message arrived at its topmost Received:
timestamp, else its Date:, else when it was fetched; it triggers a rule or the vacation
reply only when it arrived in or after the second that was switched on.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import Flask

from flask_popaccounts.engine.autoreply import LOOP_HEADER
from flask_popaccounts.services import fetching, filtering
from flask_popaccounts.storage.models import Filter
from tests.support.dovecot import Dovecot
from tests.support.smtpd import SMTPServers

from .conftest import db, mail, setup_account
from .test_filters_fetch import add_rule, set_vacation


def _mine(smtpd: SMTPServers, user: str) -> list:
    return [r for r in smtpd.received() if r.login == user]


def test_a_first_sync_of_old_mail_forwards_and_answers_only_the_new_one(
        send_app: Flask, dovecot: Dovecot, smtpd: SMTPServers,
        new_user: tuple[str, str]) -> None:
    user, pw = new_user
    aid = setup_account(send_app, dovecot, smtpd, user, pw)
    me = f"{user}@example.com"
    add_rule(send_app, aid, "Reports", [{"field": "subject", "op": "contains",
                                         "value": "report"}],
             [{"kind": "forward", "value": "me@home.example"}])
    set_vacation(send_app, aid)
    year_ago = datetime.now(timezone.utc) - timedelta(days=365)
    no_received = (f"From: Dora <dora-{user}@example.org>\r\nTo: {me}\r\n"
                   f"Subject: Old report, no Received\r\nDate: Tue, 01 Jul 2025 09:00:00 +0000"
                   f"\r\nMessage-ID: <old-date-{user}@example.org>\r\n\r\nOld.\r\n").encode()
    no_dates = (f"From: Nina <nina-{user}@example.org>\r\nTo: {me}\r\n"
                f"Subject: Undated report\r\nMessage-ID: <nodate-{user}@example.org>\r\n\r\n"
                "No date at all: it arrived when we fetched it.\r\n").encode()
    dovecot.deliver_many(user, [
        mail(1, me, frm=f"Olga <olga-{user}@example.org>", subject="Old report",
             arrived=year_ago),
        no_received,
        mail(3, me, frm=f"Nick <nick-{user}@example.org>", subject="New report"),
        no_dates,
        # one of our own forwards (from another account, or another site): never again
        mail(5, me, frm=f"Fwd <fwd-{user}@example.org>", subject="Fwd: a report",
             extra=f"{LOOP_HEADER}: elsewhere@example.org\r\n"),
    ])
    with send_app.app_context():
        assert fetching.fetch_account(send_app, aid).stored == 5
    got = _mine(smtpd, user)
    forwards = sorted(r.message["Subject"] for r in got if r.rcpt_tos == ["me@home.example"])
    assert forwards == ["Fwd: New report", "Fwd: Undated report"]
    answered = sorted(r.rcpt_tos[0] for r in got if r.rcpt_tos != ["me@home.example"])
    assert answered == sorted([f"nick-{user}@example.org", f"nina-{user}@example.org",
                               f"fwd-{user}@example.org"])
    fwd = next(r for r in got if r.message["Subject"] == "Fwd: New report")
    assert fwd.message[LOOP_HEADER] == me  # the marker is in what the server received
    assert fwd.message["Auto-Submitted"] == "auto-generated"


def test_switching_a_rule_off_and_on_moves_its_start(
        send_app: Flask, dovecot: Dovecot, smtpd: SMTPServers,
        new_user: tuple[str, str]) -> None:
    """Mail that arrived while the rule was off is old mail for it."""
    user, pw = new_user
    aid = setup_account(send_app, dovecot, smtpd, user, pw)
    me = f"{user}@example.com"
    rid = add_rule(send_app, aid, "All", [{"field": "subject", "op": "contains",
                                           "value": "note"}],
                   [{"kind": "forward", "value": "me@home.example"}])
    with db(send_app) as s:
        row = s.get(Filter, rid)
        assert row is not None and row.enabled_at is not None
        first_on = row.enabled_at
        acc = s.get(filtering.Account, aid)
        for enabled in (False, True):  # off, then on again (an hour later, say)
            filtering.save_rule(s, acc, name="All", match_all=True, enabled=enabled,
                                conditions=[{"field": "subject", "op": "contains",
                                             "value": "note"}],
                                actions=[{"kind": "forward", "value": "me@home.example"}],
                                rule=row, now=first_on + timedelta(hours=1))
    between = first_on + timedelta(minutes=30)
    dovecot.deliver_many(user, [
        mail(1, me, subject="A note from while it was off", arrived=between),
        mail(2, me, subject="A note from after",
             arrived=first_on + timedelta(hours=1, seconds=1)),
    ])
    with send_app.app_context():
        assert fetching.fetch_account(send_app, aid).stored == 2
    assert [r.message["Subject"] for r in _mine(smtpd, user)] == ["Fwd: A note from after"]


def test_a_hostile_subject_never_becomes_a_header_of_a_forward_or_a_reply(
        send_app: Flask, dovecot: Dovecot, smtpd: SMTPServers,
        new_user: tuple[str, str]) -> None:
    """Subjects copied from fetched mail ("Fwd: ...", "Re: ...") reach the same check
    (issue 11 item 16): an encoded CR/LF, even one hidden in a second encoding, never
    starts a header line in what the SMTP server received."""
    user, pw = new_user
    aid = setup_account(send_app, dovecot, smtpd, user, pw)
    me = f"{user}@example.com"
    add_rule(send_app, aid, "Reports", [{"field": "subject", "op": "contains",
                                         "value": "report"}],
             [{"kind": "forward", "value": "me@home.example"}])
    set_vacation(send_app, aid)
    once = "report =?utf-8?q?Hi=0D=0ABcc:_x@evil.example?="
    # decodes to the encoded word above: a reader that decodes twice would see CR/LF
    twice = "report =?utf-8?q?=3D=3Futf-8=3Fq=3FHi=3D0D=3D0ABcc:_x@evil.example=3F=3D?="
    dovecot.deliver_many(user, [
        mail(1, me, frm=f"Eve <eve1-{user}@example.org>", subject=once),
        mail(2, me, frm=f"Eve <eve2-{user}@example.org>", subject=twice),
        mail(3, me, frm=f"Ann <ann-{user}@example.org>", subject="Plain report"),
    ])
    with send_app.app_context():
        assert fetching.fetch_account(send_app, aid).stored == 3
    got = _mine(smtpd, user)
    assert got, "the plain report at least was forwarded and answered"
    for r in got:
        head = r.data.split(b"\r\n\r\n", 1)[0]
        assert b"\nBcc:" not in head and r.message["Bcc"] is None, head
        assert "x@evil.example" not in r.rcpt_tos
    forwards = [r.message["Subject"] for r in got if r.rcpt_tos == ["me@home.example"]]
    assert "Fwd: Plain report" in forwards
    # both hostile reports are still forwarded and answered, on one clean Subject line
    assert len([s for s in forwards if s.startswith("Fwd: report ")]) == 2, forwards
    assert all("\n" not in s and "\r" not in s for s in forwards)
    answered = {r.rcpt_tos[0] for r in got if r.rcpt_tos != ["me@home.example"]}
    assert answered == {f"eve1-{user}@example.org", f"eve2-{user}@example.org",
                        f"ann-{user}@example.org"}


def test_a_forward_attaches_the_original_byte_for_byte_even_a_thousand_levels_deep(
        send_app: Flask, dovecot: Dovecot, smtpd: SMTPServers,
        new_user: tuple[str, str]) -> None:
    from email import policy as email_policy
    from email.parser import BytesHeaderParser
    from email.utils import format_datetime

    from tests.support.mail import nested

    user, pw = new_user
    aid = setup_account(send_app, dovecot, smtpd, user, pw)
    add_rule(send_app, aid, "Deep", [{"field": "subject", "op": "contains", "value": "deep"}],
             [{"kind": "forward", "value": "me@home.example"}])
    when = format_datetime(datetime.now(timezone.utc)).encode()
    raw = nested(1000, head=b"Received: from mx.example.org by mx.example.net; " + when
                 + b"\r\n")
    dovecot.deliver_many(user, [raw])
    with send_app.app_context():
        assert fetching.fetch_account(send_app, aid).stored == 1
    fwd = [r for r in _mine(smtpd, user) if r.rcpt_tos == ["me@home.example"]]
    assert len(fwd) == 1
    # (the header only: the email package itself cannot parse a thousand levels)
    head = BytesHeaderParser(policy=email_policy.default).parsebytes(fwd[0].data)
    assert head["Subject"] == "Fwd: Deep"
    assert raw in fwd[0].data  # the original as it was stored, not parsed and rewritten
