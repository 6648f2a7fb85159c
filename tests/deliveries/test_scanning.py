"""The scanners' verdicts with the built-in SQL store (against the real Dovecot)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from sqlalchemy import func, select

from flask_popaccounts import get_state
from flask_popaccounts.engine.delivery import ScanResult, Verdict
from flask_popaccounts.engine.types import RetrievedMessage
from flask_popaccounts.hooks import Hooks
from flask_popaccounts.services import delivering, fetching, filtering
from flask_popaccounts.storage import mailbox
from flask_popaccounts.storage.deliveries import records
from flask_popaccounts.storage.models import Account, Folder, Message, UidlEntry
from tests.deliveries.conftest import add_account
from tests.support.dovecot import Dovecot
from tests.support.mail import make_message


def by_subject(message: RetrievedMessage, *, owner_id: str, account_id: int
               ) -> ScanResult | None:
    """A scanner that reads the whole message, as a virus scanner would."""
    raw = message.spool.read()
    if b"EICAR" in raw:
        return ScanResult(Verdict.REJECT, "virus: EICAR-Test-Signature")
    if b"Subject: Cheap" in raw:
        return ScanResult(Verdict.JUNK, "spam score 12.5")
    return None


def test_junk_goes_to_junk_without_filters_and_reject_is_only_recorded(
        host_app: Callable[..., Flask], dovecot: Dovecot, new_user: tuple[str, str]) -> None:
    user, password = new_user
    plain = make_message(1, subject="Hello")
    spam = make_message(2, subject="Cheap watches")
    virus = make_message(3, subject="Invoice", extra_headers="X-Test: EICAR")
    dovecot.deliver_many(user, [plain, spam, virus])
    app = host_app(Hooks(scanners=[by_subject]))
    account_id = add_account(app, dovecot, user, password)
    with app.app_context(), get_state(app).session_factory() as session:
        account = session.get(Account, account_id)
        assert account is not None
        # A rule that would mark everything read: junk mail never reaches the filters.
        filtering.save_rule(session, account, name="all read", match_all=True, enabled=True,
                            conditions=[{"field": "from", "op": "contains",
                                         "value": "sender@example.org"}],
                            actions=[{"kind": "mark_read"}])
        session.commit()
        report = fetching.fetch_account(app, account_id)
        assert (report.new, report.stored, report.deleted) == (3, 3, 3)
        assert dovecot.server_messages(user) == []  # rejected mail counts as seen
        rows = {m.subject: m for m in session.scalars(select(Message))}
        assert set(rows) == {"Hello", "Cheap watches"}
        junk = session.scalars(select(Folder).where(Folder.account_id == account_id,
                                                    Folder.name == "Junk")).one()
        assert rows["Cheap watches"].folder_id == junk.id
        assert not rows["Cheap watches"].is_read and rows["Hello"].is_read
        assert mailbox.read_raw(session, rows["Cheap watches"].id) == spam  # bytes as fetched
        assert session.scalar(select(func.count()).select_from(UidlEntry)) == 3
        [rejected] = records.rejected(session, account_id)
        assert (rejected.reason, rejected.subject, rejected.size) == (
            "virus: EICAR-Test-Signature", "Invoice", len(virus))
        # Seen: a later fetch does not ask for it again, nor store anything twice.
        assert fetching.fetch_account(app, account_id).new == 0
        session.expire_all()
        assert session.get(Account, account_id).message_count == 2  # type: ignore[union-attr]


def test_without_scanners_the_store_path_is_unchanged(
        host_app: Callable[..., Flask]) -> None:
    app = host_app()
    with app.app_context(), get_state(app).session_factory() as session:
        # No filters, no scanners: no classifier at all, as before the hooks.
        assert delivering.classifier_for(app, session, 1, "owner-1") is None
        assert delivering.external_sink(app, session, 1, owner_id="owner-1", username="u",
                                        host="h", on_commit=None) is None
