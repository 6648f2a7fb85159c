"""The real message store for fault tests: an Alembic-migrated database, one account.

``prepare(url, ...)`` migrates an empty database (SQLite file or PostgreSQL) with the
packaged migrations, as a host would, and saves one POP3 account through the services
(delete after storing); ``app_for(url, ...)`` is the host app a test or a worker
process fetches with (``services.fetching.fetch_account``: the SQL ledger and sink,
filters, quota, health). ``rows(app, account_id)`` reads back what the exactly-once
checks look at: every stored message's UIDL and bytes, and the ledger's rows.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import Flask
from sqlalchemy import create_engine, func, select

from flask_popaccounts import get_state
from flask_popaccounts.engine.types import DeletePolicy, Security
from flask_popaccounts.services import accounts as svc
from flask_popaccounts.storage import mailbox, migrations
from flask_popaccounts.storage.models import Account, Message, UidlEntry
from tests.support.flaskapp import make_app

OWNER = "fault-owner"


def app_for(url: str, port: int, ca_file: str, *, hooks: Any = None, **config: Any) -> Flask:
    """The host app on ``url`` (already migrated), allowed to reach ``port`` on loopback
    (``hooks``: the host's hooks, e.g. a delivery)."""
    return make_app(url, create=False, hooks=hooks, POPACCOUNTS_ALLOWED_POP3_PORTS=(port,),
                    POPACCOUNTS_CA_FILE=ca_file, POPACCOUNTS_CONNECT_TIMEOUT=5,
                    POPACCOUNTS_READ_TIMEOUT=20, **config)


def prepare(url: str, port: int, ca_file: str, user: str, password: str) -> int:
    """Migrate the empty database at ``url`` and save the account; its id."""
    engine = create_engine(url)
    try:
        migrations.upgrade(engine)
    finally:
        engine.dispose()
    app = app_for(url, port, ca_file)
    try:
        with app.app_context(), get_state(app).session_factory() as session:
            data = svc.AccountInput(
                email=f"{user}@example.net", name=user, send_from="", reply_to="",
                is_default=True, provider="other", pop_host="127.0.0.1", pop_port=port,
                pop_security=Security.SSL, pop_username=user, password=password,
                delete_policy=DeletePolicy.DELETE, delete_after_days=0,
                fetch_interval_minutes=5)
            return int(svc.create_account(app, session, OWNER, data).id)
    finally:
        dispose(app)


def account_id_of(app: Flask) -> int:
    with app.app_context(), get_state(app).session_factory() as session:
        return int(session.scalars(select(Account.id)).one())


def with_commit_every(fetching: Any, commit_every: int) -> None:
    """Make the services' policy commit every ``commit_every`` messages (the faults vary
    the group size; the host has no setting for it)."""
    real = fetching.retrieval_policy_for

    def policy(app: Flask, account: Account) -> Any:
        return dataclasses.replace(real(app, account), commit_every=commit_every)

    fetching.retrieval_policy_for = policy


def stored_count(app: Flask) -> int:
    with app.app_context(), get_state(app).session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(Message)) or 0)


@dataclasses.dataclass
class Row:
    uidl: str
    raw: bytes
    on_server: bool | None  #: the ledger's flag; None: the message has no ledger row


def rows(app: Flask, account_id: int) -> list[Row]:
    """Every stored message of the account with its ledger flag, in id order."""
    with app.app_context(), get_state(app).session_factory() as session:
        ledger = {uidl: on for uidl, on in session.execute(
            select(UidlEntry.uidl, UidlEntry.on_server)
            .where(UidlEntry.account_id == account_id))}
        msgs = [(mid, uidl) for mid, uidl in session.execute(
            select(Message.id, Message.uidl).where(Message.account_id == account_id)
            .order_by(Message.id))]
        return [Row(uidl or "", mailbox.read_raw(session, mid),
                    None if uidl not in ledger else bool(ledger[uidl])) for mid, uidl in msgs]


def ledger_count(app: Flask) -> int:
    """Ledger rows of every account (what was delivered, wherever it went)."""
    with app.app_context(), get_state(app).session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(UidlEntry)) or 0)


def ledger(app: Flask, account_id: int) -> dict[str, bool]:
    """The account's ledger: UIDL -> still on the server."""
    with app.app_context(), get_state(app).session_factory() as session:
        return {u: bool(on) for u, on in session.execute(
            select(UidlEntry.uidl, UidlEntry.on_server)
            .where(UidlEntry.account_id == account_id))}


def ledger_size(app: Flask, account_id: int) -> int:
    with app.app_context(), get_state(app).session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(UidlEntry)
                                  .where(UidlEntry.account_id == account_id)) or 0)


def dispose(app: Flask) -> None:
    with app.app_context():
        get_state(app).engine.dispose()
        app.extensions["test_db"].engine.dispose()
