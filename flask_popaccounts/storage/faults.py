"""The table of problem messages (``popaccounts_fetch_fault``), beside models.py.

One row per UIDL of an account that a fetch could not handle the normal way; the kinds
and what each means are :mod:`..services.mailproblems`'s. Imported by the package, so
the model is always on ``Base.metadata`` (migrations, ``create_all``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..engine.clock import utcnow
from .models import Base, UTCDateTime, _account_fk


class FetchFault(Base):
    """A message not fetched or deleted the normal way (kinds: services.mailproblems)."""

    __tablename__ = "popaccounts_fetch_fault"

    account_id: Mapped[int] = _account_fk(primary_key=True)
    uidl: Mapped[str] = mapped_column(String(70), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(200), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    from_addr: Mapped[str] = mapped_column(String(200), default="")
    subject: Mapped[str] = mapped_column(String(200), default="")
    fetch_anyway: Mapped[bool] = mapped_column(Boolean, default=False)
