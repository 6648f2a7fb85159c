"""Maildir delivery against the real Dovecot: names, folders, flags, repeats, Dovecot reading it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import delete, func, select

from flask_popaccounts import get_state
from flask_popaccounts.engine.delivery import DeliveryRefused, ScanResult, Verdict, delivery_id
from flask_popaccounts.engine.imapsearch import imap_utf7
from flask_popaccounts.engine.types import DeletePolicy
from flask_popaccounts.hooks import Delivery, Hooks
from flask_popaccounts.services import delivering, fetching, filtering
from flask_popaccounts.storage.deliveries.maildir import Maildir, folder_dir_name
from flask_popaccounts.storage.models import Account, AccountStatus, Message, UidlEntry
from tests.deliveries.conftest import add_account
from tests.support.dovecot import MAIL_GID, MAIL_UID, Dovecot
from tests.support.mail import make_message
from tests.support.platform import Platform


def files(folder: Path) -> dict[str, bytes]:
    """name -> bytes of every message of a Maildir folder (new/ and cur/)."""
    return {f"{sub}/{p.name}": p.read_bytes() for sub in ("new", "cur")
            if (folder / sub).is_dir() for p in (folder / sub).iterdir()}


def uidls(app: Flask, account_id: int) -> list[str]:
    with get_state(app).session_factory() as session:
        return list(session.scalars(select(UidlEntry.uidl)
                                    .where(UidlEntry.account_id == account_id)))


def test_fetched_mail_lands_in_the_maildir_as_fetched_under_stable_names(
        host_app: Callable[..., Flask], dovecot: Dovecot, new_user: tuple[str, str],
        tmp_path: Path) -> None:
    user, password = new_user
    originals = [make_message(i) for i in range(4)]
    dovecot.deliver_many(user, originals)
    root = tmp_path / "Maildir"
    app = host_app(Hooks(delivery=Maildir(lambda owner, account: root / owner)))
    account_id = add_account(app, dovecot, user, password)
    with app.app_context():
        report = fetching.fetch_account(app, account_id)
    assert (report.stored, report.deleted) == (4, 4)
    inbox = root / "owner-1"
    got = files(inbox)
    assert sorted(got.values()) == sorted(originals)  # the bytes exactly as fetched
    # new/<delivery id from the account and the UIDL>.popaccounts,S=<size>
    key = delivering.account_key(account_id, user, dovecot.host)
    ids = {delivery_id(key, u) for u in uidls(app, account_id)}
    assert {name[4:36] for name in got} == ids
    assert all(name == f"new/{name[4:36]}.popaccounts,S={len(raw)}"
               for name, raw in got.items())
    assert oct((inbox / "new").stat().st_mode & 0o777) == "0o700"
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in (inbox / "new").iterdir())
    with get_state(app).session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 0  # not in SQL


def test_folders_flags_and_junk_are_maildir_plus_plus(
        host_app: Callable[..., Flask], dovecot: Dovecot, new_user: tuple[str, str],
        tmp_path: Path) -> None:
    user, password = new_user
    bill = make_message(1, subject="Your invoice")
    note = make_message(2, subject="A note")
    spam = make_message(3, subject="Cheap pills")
    dovecot.deliver_many(user, [bill, note, spam])

    def scan(message: object, **kw: object) -> ScanResult | None:
        raw = message.spool.read()  # type: ignore[attr-defined]
        return ScanResult(Verdict.JUNK, "spam") if b"Cheap" in raw else None

    root = tmp_path / "Maildir"
    app = host_app(Hooks(delivery=Maildir(root), scanners=[scan]))
    account_id = add_account(app, dovecot, user, password)
    with app.app_context(), get_state(app).session_factory() as session:
        account = session.get(Account, account_id)
        assert account is not None
        for field, value, acts in (
                ("subject", "invoice", [{"kind": "move", "value": "Bills.2025"},
                                        {"kind": "mark_read"}, {"kind": "flag"}]),
                ("subject", "note", [{"kind": "flag"}]),
                ("subject", "pills", [{"kind": "mark_read"}])):  # junk: no filters
            filtering.save_rule(session, account, name=value, match_all=True, enabled=True,
                                conditions=[{"field": field, "op": "contains", "value": value}],
                                actions=acts)
        assert fetching.fetch_account(app, account_id).stored == 3
    bills = files(root / ".Bills_2025")
    assert list(bills.values()) == [bill] and next(iter(bills)).endswith(":2,FS")
    assert next(iter(bills)).startswith("cur/")
    assert (root / ".Bills_2025" / "maildirfolder").exists()
    inbox = files(root)
    assert list(inbox.values()) == [note] and next(iter(inbox)).endswith(":2,F")
    junk = files(root / ".Junk")
    assert list(junk.values()) == [spam] and next(iter(junk)).startswith("new/")


def test_a_repeat_after_a_crash_only_records_what_is_there(
        host_app: Callable[..., Flask], dovecot: Dovecot, new_user: tuple[str, str],
        tmp_path: Path) -> None:
    """The crash between the link and the ledger commit: the files are there, the ledger
    rows are not. The user even read one meanwhile (new/ -> cur/ with flags)."""
    user, password = new_user
    originals = [make_message(i) for i in range(3)]
    dovecot.deliver_many(user, originals)
    root = tmp_path / "Maildir"
    app = host_app(Hooks(delivery=Maildir(root)))
    account_id = add_account(app, dovecot, user, password, delete=DeletePolicy.KEEP)
    with app.app_context():
        fetching.fetch_account(app, account_id)
    before = files(root)
    first = sorted(root.joinpath("new").iterdir())[0]
    os.rename(first, root / "cur" / f"{first.name}:2,S")  # the user read it
    with get_state(app).session_factory() as session:
        session.execute(delete(UidlEntry))  # the commit that never happened
        session.commit()
    with app.app_context():
        report = fetching.fetch_account(app, account_id)
    assert report.stored == 3  # fetched again, and recorded ...
    after = files(root)
    assert sorted(after.values()) == sorted(before.values())  # ... but not delivered twice
    assert len(uidls(app, account_id)) == 3


def test_dovecot_serves_what_the_maildir_delivery_wrote(
        host_app: Callable[..., Flask], dovecot: Dovecot, new_user: tuple[str, str],
        platform: Platform, platform_user: str) -> None:
    user, password = new_user
    originals = [make_message(i, subject=f"maildir {i}") for i in range(3)]
    dovecot.deliver_many(user, originals)
    delivery = Maildir(lambda owner, account: platform.maildir(platform_user),
                       owner=(MAIL_UID, MAIL_GID))
    app = host_app(Hooks(delivery=delivery))
    account_id = add_account(app, dovecot, user, password)
    with app.app_context():
        assert fetching.fetch_account(app, account_id).stored == 3
    assert sorted(platform.messages(platform_user)) == sorted(originals)


def test_a_maildir_it_may_not_write_is_a_named_error_and_the_mail_waits(
        host_app: Callable[..., Flask], dovecot: Dovecot, new_user: tuple[str, str],
        tmp_path: Path) -> None:
    user, password = new_user
    dovecot.deliver_many(user, [make_message(1)])
    (tmp_path / "not-a-dir").write_text("")
    app = host_app(Hooks(delivery=Maildir(tmp_path / "not-a-dir")))
    account_id = add_account(app, dovecot, user, password)
    with app.app_context(), pytest.raises(DeliveryRefused):
        fetching.fetch_account(app, account_id)
    with get_state(app).session_factory() as session:
        account = session.get(Account, account_id)
        assert account is not None and account.status == AccountStatus.NEEDS_ATTENTION.value
        assert account.last_error_code == "delivery_refused"
    assert uidls(app, account_id) == [] and len(dovecot.server_messages(user)) == 1


def test_the_maildir_delivery_fits_the_hook() -> None:
    assert isinstance(Maildir("/tmp/x"), Delivery) and Maildir("/tmp/x").idempotent


def test_maildir_folder_names_are_maildir_plus_plus_in_modified_utf7() -> None:
    assert folder_dir_name("INBOX") is None and folder_dir_name("inbox") is None
    assert folder_dir_name("Work/Projects 2025") == ".Work.Projects 2025"
    assert folder_dir_name("a.b") == ".a_b"  # "." is the hierarchy separator on disk
    assert folder_dir_name("Junk") == ".Junk"
    assert imap_utf7("Entwürfe") == "Entw&APw-rfe"
    assert imap_utf7("台北") == "&U,BTFw-"  # RFC 3501 §5.1.3's example
    assert imap_utf7("R&D") == "R&-D"
    assert folder_dir_name("صادر") == "." + imap_utf7("صادر")
