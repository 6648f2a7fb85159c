"""The delivery records (``popaccounts_delivery``): intents still open, and rejections.

One row per UIDL of an account, in one of two states:

- ``sending``: an intent. A delivery that cannot repeat itself harmlessly (LMTP into a
  mail server) writes it, durably, before the message goes out, and removes it in the
  transaction that writes the message's ledger row. An intent found at the start of a
  fetch session is what a crash left between the two: that message may have arrived.
- ``rejected``: a scanner refused the message. It was not delivered; its ledger row
  says it was seen (never fetched again, deleted per the account's policy) and this
  row keeps the reason, the sender and the subject for the user.

Imported by the package, so the table is always on ``Base.metadata``.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import BigInteger, String, delete, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from ...engine.clock import utcnow
from ..mailbox import table_of
from ..models import Base, UTCDateTime, _account_fk

SENDING = "sending"
REJECTED = "rejected"

#: Bound on the number of parameters in one ``IN (...)`` list.
_IN_BATCH = 500


class DeliveryRecord(Base):
    """An open delivery intent, or a message a scanner rejected."""

    __tablename__ = "popaccounts_delivery"

    account_id: Mapped[int] = _account_fk(primary_key=True)
    uidl: Mapped[str] = mapped_column(String(70), primary_key=True)
    state: Mapped[str] = mapped_column(String(12))  #: SENDING | REJECTED
    target: Mapped[str] = mapped_column(String(32), default="")  #: the delivery's name
    delivery_id: Mapped[str] = mapped_column(String(32), default="")
    reason: Mapped[str] = mapped_column(String(200), default="")
    from_addr: Mapped[str] = mapped_column(String(200), default="")
    subject: Mapped[str] = mapped_column(String(200), default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


_TABLE = table_of(DeliveryRecord)


def row(account_id: int, uidl: str, state: str, *, target: str, delivery_id: str = "",
        reason: str = "", from_addr: str = "", subject: str = "", size: int = 0,
        at: datetime) -> dict[str, object]:
    """A record row for :func:`insert_rows` (texts cut to their columns)."""
    return {"account_id": account_id, "uidl": uidl, "state": state, "target": target[:32],
            "delivery_id": delivery_id, "reason": reason[:200], "from_addr": from_addr[:200],
            "subject": subject[:200], "size": size, "at": at}


def insert_rows(session: Session, rows: list[dict[str, object]]) -> None:
    """Insert record rows in the session's transaction (no commit)."""
    if rows:
        session.connection().execute(insert(_TABLE), rows)


def open_intents(session: Session, account_id: int) -> set[str]:
    """UIDLs whose delivery may or may not have happened (a crash left the intent)."""
    return set(session.scalars(select(DeliveryRecord.uidl).where(
        DeliveryRecord.account_id == account_id, DeliveryRecord.state == SENDING)))


def close_intents(session: Session, account_id: int, uidls: Collection[str]) -> None:
    """Remove these intents in the session's transaction (no commit)."""
    todo = list(uidls)
    for i in range(0, len(todo), _IN_BATCH):
        session.execute(delete(_TABLE).where(
            _TABLE.c.account_id == account_id, _TABLE.c.state == SENDING,
            _TABLE.c.uidl.in_(todo[i:i + _IN_BATCH])))


def rejected(session: Session, account_id: int) -> list[DeliveryRecord]:
    """The account's rejected messages, newest first (what the user is shown)."""
    return list(session.scalars(select(DeliveryRecord).where(
        DeliveryRecord.account_id == account_id, DeliveryRecord.state == REJECTED)
        .order_by(DeliveryRecord.at.desc(), DeliveryRecord.uidl)))
