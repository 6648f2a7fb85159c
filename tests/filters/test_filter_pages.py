"""The Filters and Vacation pages through the test client (own rows only, validation)."""

from __future__ import annotations

import re

from flask import Flask
from sqlalchemy import select

from flask_popaccounts.services import fetching
from flask_popaccounts.storage.models import Filter, Folder, Message, Vacation
from tests.support.dovecot import Dovecot
from tests.support.isolation import plain
from tests.support.smtpd import SMTPServers
from tests.web.conftest import PREFIX, login

from .conftest import db, mail, setup_account


def rule_form(**over: str) -> dict[str, str]:
    data = {"name": "Bills", "enabled": "y", "match": "all",
            "cond-0-field": "subject", "cond-0-op": "contains", "cond-0-value": "invoice",
            "cond-0-header": "", "cond-1-field": "", "cond-1-op": "contains",
            "cond-1-value": "", "cond-1-header": "",
            "act-0-kind": "move", "act-0-value": "Bills", "act-1-kind": "mark_read",
            "act-1-value": ""}
    data.update(over)
    return data


def test_rule_editor_list_order_and_vacation_pages(send_app: Flask, dovecot: Dovecot,
                                                   smtpd: SMTPServers,
                                                   new_user: tuple[str, str]) -> None:
    user, pw = new_user
    aid = setup_account(send_app, dovecot, smtpd, user, pw)
    client = login(send_app.test_client())
    index = client.get(f"{PREFIX}/").text
    assert f"{PREFIX}/{aid}/filters" in index and f"{PREFIX}/{aid}/vacation" in index
    assert "No rules yet" in client.get(f"{PREFIX}/{aid}/filters").text
    assert "vacation-cannot-send" not in client.get(f"{PREFIX}/{aid}/vacation").text

    bad = client.post(f"{PREFIX}/{aid}/filters/new", data=rule_form(
        name="", **{"cond-0-op": "matches", "cond-0-value": "(a+)+",
                    "act-0-kind": "forward", "act-0-value": "stranger@example.org"}))
    assert bad.status_code == 422
    assert "Give the rule a name." in bad.text
    assert "repeated group contains another repeat" in bad.text
    assert "only to an address you have verified" in bad.text
    assert 'value="(a+)+"' in bad.text  # what was typed stays in the form

    assert client.post(f"{PREFIX}/{aid}/filters/new", data=rule_form()).status_code == 302
    assert client.post(f"{PREFIX}/{aid}/filters/new", data=rule_form(
        name="Home", **{"cond-0-field": "from", "cond-0-value": "bob",
                        "act-0-kind": "forward", "act-0-value": "me@home.example",
                        "act-1-kind": "flag"})).status_code == 302
    with db(send_app) as s:
        rows = s.scalars(select(Filter).where(Filter.account_id == aid)
                         .order_by(Filter.position)).all()
        ids = [r.id for r in rows]
    assert [r.name for r in rows] == ["Bills", "Home"]
    page = client.get(f"{PREFIX}/{aid}/filters").text
    assert "If Subject contains “invoice”: Move to folder Bills; Mark as read" in plain(page)
    assert client.post(f"{PREFIX}/{aid}/filters/{ids[1]}/move/up").status_code == 302
    page = client.get(f"{PREFIX}/{aid}/filters").text
    assert page.index('data-rule="Home"') < page.index('data-rule="Bills"')
    edit = client.get(f"{PREFIX}/{aid}/filters/{ids[0]}/edit").text
    assert 'value="invoice"' in edit
    assert client.post(f"{PREFIX}/{aid}/filters/{ids[0]}/edit", data=rule_form(
        **{"cond-0-value": "receipt"})).status_code == 302

    # run on existing mail
    dovecot.deliver(user, mail(1, f"{user}@example.com", subject="Your receipt"))
    with send_app.app_context():
        fetching.fetch_account(send_app, aid)
    resp = client.post(f"{PREFIX}/{aid}/filters/{ids[0]}/run", follow_redirects=True)
    assert "1 message matched" in resp.text
    with db(send_app) as s:
        folder = s.scalar(select(Folder.name).join(Message, Message.folder_id == Folder.id)
                          .where(Message.account_id == aid))
    assert folder == "Bills"  # (the Home rule saw it at fetch time: From bob, flagged)

    # vacation
    resp = client.post(f"{PREFIX}/{aid}/vacation", data={
        "enabled": "y", "starts_on": "2026-08-10", "ends_on": "2026-08-01", "subject": "",
        "body": "", "interval_days": "0"})
    assert resp.status_code == 422
    for text in ("The last day is before the first day.", "Write the reply", "1 to 365 days"):
        assert text in resp.text
    resp = client.post(f"{PREFIX}/{aid}/vacation", data={
        "enabled": "y", "starts_on": "", "ends_on": "", "subject": "Away",
        "body": "Back soon.", "interval_days": "3"}, follow_redirects=True)
    assert "Vacation reply on." in resp.text and "On now" in resp.text
    with db(send_app) as s:
        v = s.scalar(select(Vacation).where(Vacation.account_id == aid))
        assert v is not None and (v.enabled, v.subject, v.interval_days) == (True, "Away", 3)

    assert client.post(f"{PREFIX}/{aid}/filters/{ids[1]}/delete").status_code == 302
    assert 'data-rule="Home"' not in client.get(f"{PREFIX}/{aid}/filters").text


def test_other_users_filters_are_404(send_app: Flask, dovecot: Dovecot, smtpd: SMTPServers,
                                     new_user: tuple[str, str]) -> None:
    user, pw = new_user
    aid = setup_account(send_app, dovecot, smtpd, user, pw)
    alice = login(send_app.test_client())
    assert alice.post(f"{PREFIX}/{aid}/filters/new", data=rule_form()).status_code == 302
    rid = int(re.search(r'id="rule-(\d+)"', alice.get(f"{PREFIX}/{aid}/filters").text)
              .group(1))  # type: ignore[union-attr]
    bob = login(send_app.test_client(), "bob")
    for method, url in [("get", f"/{aid}/filters"), ("get", f"/{aid}/vacation"),
                        ("get", f"/{aid}/filters/{rid}/edit"),
                        ("post", f"/{aid}/filters/{rid}/delete"),
                        ("post", f"/{aid}/filters/{rid}/run"),
                        ("post", f"/{aid}/filters/{rid}/move/up")]:
        assert getattr(bob, method)(PREFIX + url).status_code == 404, url
