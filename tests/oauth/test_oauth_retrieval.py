"""The OAuth wizard's retrieval settings (issue 13): an Outlook account added "from now
on", into a folder named after it, marked read on arrival; fetched over XOAUTH2."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from flask_popaccounts import get_state
from flask_popaccounts.services import fetching
from flask_popaccounts.storage.models import Account, Folder, Message, UidlEntry
from tests.support.authserver import AuthServer
from tests.support.dovecot import Dovecot

from .conftest import PREFIX, MsUser, mail
from .flow import add_form, sign_in


def test_outlook_from_now_on_into_its_folder_read(
        oauth_app: Flask, client: FlaskClient, authsrv: AuthServer, oauth_dovecot: Dovecot,
        ms_user: MsUser) -> None:
    page = client.get(f"{PREFIX}/add/pop3/oauth/outlook").text
    assert "Retrieval settings" in page and 'name="first_import"' in page
    assert 'value="folder"' not in page  # nothing of its own to choose yet
    oauth_dovecot.deliver_many(ms_user.email, [mail("Old", 1), mail("Older", 2)])
    resp = sign_in(client, authsrv, f"{PREFIX}/add/pop3/oauth/outlook/start", add_form(
        ms_user, name="Outlook mail", first_import="new", deliver_to="account",
        mark_read="y", delete_policy="delete"), ms_user)
    assert resp.status_code == 302, resp.text
    factory = get_state(oauth_app).session_factory
    with factory() as s:
        account = s.scalar(select(Account))
        assert account is not None and account.import_only_new and account.mark_read
        aid = account.id
        assert s.scalar(select(Folder.id).where(Folder.account_id == aid,
                                                Folder.name == "Outlook mail"))

    first = fetching.fetch_account(oauth_app, aid)
    assert (first.stored, first.marked_seen) == (0, 2)
    oauth_dovecot.deliver(ms_user.email, mail("New", 3))
    assert fetching.fetch_account(oauth_app, aid).stored == 1
    with factory() as s:
        rows = s.execute(select(Folder.name, Message.subject, Message.is_read)
                         .join(Folder, Folder.id == Message.folder_id)).all()
        assert [tuple(r) for r in rows] == [("Outlook mail", "New", True)]
        assert sorted(u.seen_only for u in s.scalars(select(UidlEntry))) == [False, True, True]
    assert len(oauth_dovecot.server_messages(ms_user.email)) == 2  # only the new one deleted


def test_a_folder_id_in_the_oauth_wizard_is_404(oauth_app: Flask, client: FlaskClient,
                                                ms_user: MsUser) -> None:
    resp = client.post(f"{PREFIX}/add/pop3/oauth/outlook/start", data=add_form(
        ms_user, deliver_to="folder", deliver_folder="1"))
    assert resp.status_code == 404
