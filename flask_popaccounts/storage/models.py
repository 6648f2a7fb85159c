"""SQLAlchemy 2.0 models; every table is prefixed ``popaccounts_``.

The models use their own declarative base and metadata, so a host can use them with
Flask-SQLAlchemy or plain SQLAlchemy alike, and the extension's Alembic lineage only
ever touches its own tables. Owners are the host's user ids as strings (Flask-Login's
``get_id()``): no foreign key into the host's schema.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, MappedColumn, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from ..engine.clock import utcnow
from ..engine.types import AuthMethod, DeletePolicy, Security

NAMING = {
    "ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s", "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
}


def value_of(member: object) -> str:
    """The stored string of an enum column, whether it holds the enum or the loaded str
    (``str()`` of a ``(str, Enum)`` member is ``"Cls.NAME"`` on Python 3.11, not its value)."""
    if isinstance(member, enum.Enum):
        return str(member.value)
    return str(member)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _account_fk(**kw: Any) -> MappedColumn[Any]:
    """The ``account_id`` column of a table that belongs to an account (deleted with it)."""
    return mapped_column(ForeignKey("popaccounts_account.id", ondelete="CASCADE"), **kw)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class AccountStatus(str, enum.Enum):
    """What the account card says, in one word (the detail is ``last_error_code``)."""

    NEW = "new"  #: saved, never fetched yet
    OK = "ok"  #: the last fetch succeeded (``fetch_warning``: but not wholly)
    RETRYING = "retrying"  #: a transient failure; backing off, will recover by itself
    NEEDS_PASSWORD = "needs_password"  # noqa: S105 (a status, not a password) #: the server refused the password (R7)
    NEEDS_REAUTH = "needs_reauth"  #: OAuth authorization revoked or expired (R13)
    NEEDS_ATTENTION = "needs_attention"  #: another failure only the user can fix
    DISABLED = "disabled"  #: switched off by the user
    #: the owner's storage quota is reached (R19): paused until space is freed
    PAUSED_QUOTA = "paused_quota"


class FolderRole(str, enum.Enum):
    INBOX = "inbox"
    SENT = "sent"
    TRASH = "trash"
    CUSTOM = "custom"


class Account(Base):
    """One outside mailbox a user brought in."""

    __tablename__ = "popaccounts_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(255), index=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200))
    send_from: Mapped[str] = mapped_column(String(320))
    reply_to: Mapped[str] = mapped_column(String(320), default="")
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    provider: Mapped[str] = mapped_column(String(32), default="other")

    # Incoming (POP3)
    pop_host: Mapped[str] = mapped_column(String(253))
    pop_port: Mapped[int] = mapped_column(Integer)
    pop_security: Mapped[Security] = mapped_column(String(16))
    pop_username: Mapped[str] = mapped_column(String(320))
    auth_method: Mapped[AuthMethod] = mapped_column(String(16), default=AuthMethod.PASSWORD)
    #: Fernet token of the password or of the OAuth token set (JSON); never rendered.
    secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)

    # Outgoing (SMTP, R9). No host: mail goes through the host's system relay, and the
    # From address must be verified by a code first (R10).
    smtp_host: Mapped[str | None] = mapped_column(String(253), default=None)
    smtp_port: Mapped[int | None] = mapped_column(Integer, default=None)
    smtp_security: Mapped[str | None] = mapped_column(String(16), default=None)
    #: "same" (the incoming credentials), "custom" (smtp_username/smtp_secret_enc), "none"
    smtp_auth_mode: Mapped[str] = mapped_column(String(16), default="none")
    smtp_username: Mapped[str | None] = mapped_column(String(320), default=None)
    #: Fernet token of the SMTP password ("custom" mode only); never rendered.
    smtp_secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    #: The custom server was tested: connected, TLS verified, EHLO, AUTH, MAIL FROM.
    smtp_verified: Mapped[bool] = mapped_column(Boolean, default=False)

    # Retrieval policy
    delete_policy: Mapped[DeletePolicy] = mapped_column(String(16), default=DeletePolicy.KEEP)
    delete_after_days: Mapped[int] = mapped_column(Integer, default=0)
    max_message_size: Mapped[int] = mapped_column(BigInteger, default=50 * 1024 * 1024)
    fetch_interval_minutes: Mapped[int] = mapped_column(Integer, default=5)
    accept_uidl_reset: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Where fetched mail goes, how it arrives, the first import: storage/retrieval.py
    deliver_to: Mapped[str] = mapped_column(String(16), default="inbox")  #: inbox|account|folder
    deliver_folder_id: Mapped[int | None] = mapped_column(Integer, default=None)  #: (no FK)
    mark_read: Mapped[bool] = mapped_column(Boolean, default=False)  #: R18's default: unread
    import_only_new: Mapped[bool] = mapped_column(Boolean, default=False)  #: and not yet done

    # Health
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[AccountStatus] = mapped_column(String(20), default=AccountStatus.NEW)
    last_error_code: Mapped[str | None] = mapped_column(String(40), default=None)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None, index=True)
    fetch_warning: Mapped[str | None] = mapped_column(String(80), default=None)  # FetchFault

    # Claim (lease) so that one account is never fetched twice at once
    lease_owner: Mapped[str | None] = mapped_column(String(120), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    #: "Check now" was asked for: the next dispatcher claims this account first, even
    #: when it needs attention (never when its credentials were refused). Cleared on claim.
    check_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    # Progress of the fetch running now (R16), on the row for any web process; written at
    # most twice a second, cleared at its end. last_fetch_stored: its result (None: failed).
    progress_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    progress_done: Mapped[int | None] = mapped_column(Integer, default=None)
    progress_total: Mapped[int | None] = mapped_column(Integer, default=None)
    progress_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    progress_bytes_total: Mapped[int | None] = mapped_column(BigInteger, default=None)
    last_fetch_stored: Mapped[int | None] = mapped_column(Integer, default=None)

    # Counters (kept in the same transaction as the messages they count)
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    bytes_stored: Mapped[int] = mapped_column(BigInteger, default=0)
    fetched_total: Mapped[int] = mapped_column(BigInteger, default=0)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    folders: Mapped[list[Folder]] = relationship(
        back_populates="account", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        UniqueConstraint("owner_id", "email", name="uq_popaccounts_account_owner_email"),
    )

    def __repr__(self) -> str:  # never shows the secret
        return f"<Account {self.id} {self.email!r} owner={self.owner_id!r}>"


class UidlEntry(Base):
    """The ledger: a UIDL here means the message was durably stored (the point of truth)."""

    __tablename__ = "popaccounts_uidl"

    account_id: Mapped[int] = _account_fk(primary_key=True)
    uidl: Mapped[str] = mapped_column(String(70), primary_key=True)  # RFC 1939: 1..70 chars
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    on_server: Mapped[bool] = mapped_column(Boolean, default=True)
    #: seen at a first import "from now on", never stored here (so never deleted there)
    seen_only: Mapped[bool] = mapped_column(Boolean, default=False)


class Folder(Base):
    __tablename__ = "popaccounts_folder"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = _account_fk(index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[FolderRole] = mapped_column(String(16), default=FolderRole.CUSTOM)

    account: Mapped[Account] = relationship(back_populates="folders")

    __table_args__ = (UniqueConstraint("account_id", "name", name="uq_popaccounts_folder_name"),)


class Message(Base):
    """A stored message: metadata here, the raw bytes in ``MessageChunk`` rows."""

    __tablename__ = "popaccounts_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = _account_fk()
    folder_id: Mapped[int] = mapped_column(ForeignKey("popaccounts_folder.id", ondelete="CASCADE"))
    uidl: Mapped[str | None] = mapped_column(String(70), default=None)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at_source: Mapped[str] = mapped_column(String(10), default="date")
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    from_addr: Mapped[str] = mapped_column(Text, default="")
    to_addrs: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(Text, default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    is_read: Mapped[bool] = mapped_column(Boolean, default=False)
    is_flagged: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        Index("ix_popaccounts_message_listing", "account_id", "folder_id", "sent_at"),
    )


class MessageChunk(Base):
    """Raw message bytes in bounded chunks, so no message is ever held whole in memory."""

    __tablename__ = "popaccounts_message_chunk"

    message_id: Mapped[int] = mapped_column(
        ForeignKey("popaccounts_message.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class SendAsAddress(Base):
    """An address mail from an account may carry: its From or its Reply-To (R10, R11).

    ``verified_at`` set means the address may be used; it is set by a correct code, or
    directly when the account's own SMTP server accepted it after authenticating.
    """

    __tablename__ = "popaccounts_send_as"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = _account_fk(index=True)
    owner_id: Mapped[str] = mapped_column(String(255), index=True)
    address: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(16))  #: "from" | "reply_to"
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    verified_by: Mapped[str | None] = mapped_column(String(16), default=None)  #: code | smtp
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("account_id", "kind", "address", name="uq_popaccounts_send_as_addr"),
    )


class VerificationCode(Base):
    """One emailed confirmation code; only its HMAC is stored, never the code."""

    __tablename__ = "popaccounts_verification_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    send_as_id: Mapped[int] = mapped_column(
        ForeignKey("popaccounts_send_as.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: "active" | "used" | "locked" (too many attempts) | "replaced" (a newer code was sent)
    state: Mapped[str] = mapped_column(String(10), default="active")


class Signature(Base):
    __tablename__ = "popaccounts_signature"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = _account_fk(unique=True)
    text: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str] = mapped_column(Text, default="")
    placement: Mapped[str] = mapped_column(String(16), default="below")
    on_new: Mapped[bool] = mapped_column(Boolean, default=True)
    on_reply: Mapped[bool] = mapped_column(Boolean, default=True)
    on_forward: Mapped[bool] = mapped_column(Boolean, default=True)


class Template(Base):
    __tablename__ = "popaccounts_template"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = _account_fk(index=True)
    name: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[int] = mapped_column(Integer, default=0)


class Filter(Base):
    __tablename__ = "popaccounts_filter"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = _account_fk(index=True)
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer, default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    match_all: Mapped[bool] = mapped_column(Boolean, default=True)
    #: JSON lists of conditions and actions, validated by the engine's filter module.
    conditions_json: Mapped[str] = mapped_column(Text, default="[]")
    actions_json: Mapped[str] = mapped_column(Text, default="[]")
    #: When last switched on: it forwards only mail arrived since (None: nothing).
    enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Vacation(Base):
    __tablename__ = "popaccounts_vacation"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = _account_fk(unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    subject: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    interval_days: Mapped[int] = mapped_column(Integer, default=7)
    #: When last switched on: it answers only mail arrived since (None: nothing).
    enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class VacationReplied(Base):
    """When an account's vacation reply last went to a sender (once per N days, R1)."""

    __tablename__ = "popaccounts_vacation_replied"

    account_id: Mapped[int] = _account_fk(primary_key=True)
    sender: Mapped[str] = mapped_column(String(320), primary_key=True)  #: lower-case
    last_replied_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutboxItem(Base):
    """Mail a filter or the vacation reply must send, written with the message it is for.

    Rows are inserted in the transaction that stores the fetched message (so a crash
    leaves both or neither) and sent only after that commit. ``state``: "pending" (to
    send; ``next_attempt_at``), "sending" (claimed: never sent again automatically, so a
    crash mid-send cannot send twice), "sent", "failed" (gave up; ``last_error``).
    """

    __tablename__ = "popaccounts_outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = _account_fk(index=True)
    #: The stored message this is about (forward: the message forwarded).
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("popaccounts_message.id", ondelete="SET NULL"), default=None
    )
    kind: Mapped[str] = mapped_column(String(16))  #: "forward" | "vacation"
    recipient: Mapped[str] = mapped_column(String(320))
    rule_id: Mapped[int | None] = mapped_column(Integer, default=None)
    state: Mapped[str] = mapped_column(String(10), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(String(200), default=None)


class CodeSend(Base):
    """A confirmation email the site sent: the code limits (services.verification), kept
    apart from send-as rows so that deleting an address resets none of them."""

    __tablename__ = "popaccounts_code_send"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(255), index=True)
    address: Mapped[str] = mapped_column(String(320), index=True)  #: lower-case
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
