"""Mail in the example webmail's store without a POP server: an account saved through
the accounts service, and messages filed as a fetch (Inbox, or a folder a filter made)
or a send (Sent) files them, through the store's own sink and ``file_sent``."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from typing import Any

from flask import Flask
from sqlalchemy import select

from flask_popaccounts import get_state
from flask_popaccounts.engine.parse import parse_meta
from flask_popaccounts.engine.types import RetrievedMessage, Security
from flask_popaccounts.storage import mailbox, mailstore
from flask_popaccounts.storage.models import Account, Folder, FolderRole, Message

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc)


def owner_id(app: Flask, username: str) -> str:
    from example_app import User, db

    with app.app_context():
        return str(db.session.scalar(db.select(User.id).where(User.username == username)))


def add_account(app: Flask, user: str = "alice", email: str = "me@example.com",
                name: str = "Work") -> int:
    """An account saved directly (its incoming test is proven elsewhere): Inbox, Sent
    and Trash, as every account starts."""
    from flask_popaccounts.services.accounts import AccountInput, create_account

    with app.test_request_context():
        session = get_state(app).session_factory()
        try:
            account = create_account(app, session, owner_id(app, user), AccountInput(
                email=email, name=name, send_from=email, reply_to="", is_default=False,
                provider="other", pop_host="pop.example.com", pop_port=995,
                pop_security=Security.SSL, pop_username=email, password="pw-not-used"))
            return int(account.id)
        finally:
            session.close()


def raw_mail(subject: str, frm: str = "Dana <dana@example.org>", to: str = "me@example.com",
             sent_at: datetime = T0, body: str = "Hello.") -> bytes:
    date = sent_at.strftime("%a, %d %b %Y %H:%M:%S +0000")
    return (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\n"
            f"Message-ID: <{abs(hash((subject, sent_at)))}@example.org>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{body}\r\n").encode()


def file_message(app: Flask, account_id: int, subject: str, *, folder: str = "inbox",
                 sent_at: datetime = T0, **kw: Any) -> int:
    """Store one message: ``folder`` "inbox" (fetched, unread), "sent" (sent, read), or
    the name of a folder such as a filter files mail into (made when missing)."""
    raw = raw_mail(subject, sent_at=sent_at, **kw)
    header_end = raw.index(b"\r\n\r\n") + 4
    meta = parse_meta(raw[:header_end], len(raw), sent_at)
    with app.app_context():
        session = get_state(app).session_factory()
        try:
            if folder == "sent":
                mid = mailstore.file_sent(session, account_id, raw, meta)
                session.commit()
                return mid
            if folder == "inbox":
                folder_id = mailbox.folder_id_for(session, account_id, FolderRole.INBOX)
            else:
                folder_id = session.scalar(select(Folder.id).where(
                    Folder.account_id == account_id, Folder.name == folder))
                if folder_id is None:
                    row = Folder(account_id=account_id, name=folder, role="custom")
                    session.add(row)
                    session.commit()
                    folder_id = row.id
            sink = mailstore.SqlSink(session, account_id, int(folder_id))
            uidl = f"u{abs(hash((account_id, subject, sent_at)))}"
            sink.add(RetrievedMessage(uidl=uidl, size=len(raw), spool=io.BytesIO(raw),
                                      meta=meta))
            sink.commit()
            return int(sink.committed_ids[-1])
        finally:
            session.close()


def state(app: Flask, account_id: int) -> dict[str, Any]:
    """The account's counters and each message's (folder name, read) by subject."""
    with app.app_context():
        session = get_state(app).session_factory()
        try:
            account = session.get(Account, account_id)
            assert account is not None
            rows = session.execute(
                select(Message.subject, Folder.name, Message.is_read, Message.size)
                .join(Folder, Folder.id == Message.folder_id)
                .where(Message.account_id == account_id)).all()
            count, size = mailbox.recount(session, account_id)  # what the rows hold
            session.rollback()
            return {"message_count": account.message_count,
                    "bytes_stored": account.bytes_stored, "true_count": count,
                    "true_bytes": size,
                    "messages": {s: (f, bool(r)) for s, f, r, _ in rows}}
        finally:
            session.close()


def folder_id(app: Flask, account_id: int, name: str) -> int:
    with app.app_context():
        session = get_state(app).session_factory()
        try:
            fid = session.scalar(select(Folder.id).where(Folder.account_id == account_id,
                                                         Folder.name == name))
            assert fid is not None
            return int(fid)
        finally:
            session.close()


def chunks_of(app: Flask, message_id: int) -> int:
    """How many raw-byte chunks of the message are stored (0: its bytes are gone)."""
    from sqlalchemy import func

    from flask_popaccounts.storage.models import MessageChunk

    with app.app_context():
        session = get_state(app).session_factory()
        try:
            return int(session.scalar(select(func.count()).select_from(MessageChunk)
                                      .where(MessageChunk.message_id == message_id)) or 0)
        finally:
            session.close()
