"""The vacation reply's settings (R1): when it is on, what it says, how often per sender.

The reply itself is decided at fetch time by the account's classifier (:mod:`.filtering`,
RFC 3834 rules in :mod:`..engine.autoreply`) and sent by :mod:`.outbox`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..engine import safety
from ..engine.clock import utcnow
from ..engine.filters import RuleInvalid
from ..i18n import gettext as _
from ..storage.models import Account, Vacation


@dataclass
class VacationInput:
    enabled: bool
    starts_on: str  #: YYYY-MM-DD or ""
    ends_on: str
    subject: str
    body: str
    interval_days: int = 7


def get_vacation(session: Session, account_id: int) -> Vacation | None:
    return session.scalar(select(Vacation).where(Vacation.account_id == account_id))


def _day(text: str, problem: str, problems: list[str]) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        problems.append(problem)
        return None


def save_vacation(session: Session, account: Account, data: VacationInput, *,
                  now: datetime | None = None) -> Vacation:
    """Validate and store the vacation reply; commits. Raises RuleInvalid with problems.

    The problems are in the reader's language (it runs in the request).
    Dates are whole days (UTC): it replies from the start of the first day to the end
    of the last one; an empty date leaves that side open. Switching it on records
    ``now`` (the app's clock): only mail that arrives from then on (and from the first
    day on) is answered, never older mail a first sync brings in.
    """
    problems: list[str] = []
    starts = _day(data.starts_on, _("The first date must look like 2026-07-31."), problems)
    ends = _day(data.ends_on, _("The last date must look like 2026-07-31."), problems)
    if starts and ends and ends < starts:
        problems.append(_("The last day is before the first day."))
    subject = " ".join(data.subject.split())
    if len(subject) > 200:
        problems.append(_("The subject is longer than 200 characters."))
    if not safety.header_value_is_safe(subject):  # also once encoded words are decoded
        problems.append(_("The subject must not contain line breaks or control characters."))
    if data.enabled and not data.body.strip():
        problems.append(_("Write the reply's text."))
    if len(data.body) > 20000:
        problems.append(_("The text is longer than 20,000 characters."))
    if not 1 <= int(data.interval_days) <= 365:
        problems.append(_("Reply to the same sender again after 1 to 365 days."))
    if problems:
        raise RuleInvalid(problems)
    row = get_vacation(session, account.id)
    if row is None:
        row = Vacation(account_id=account.id)
        session.add(row)
    if data.enabled and (not row.enabled or row.enabled_at is None):
        row.enabled_at = now or utcnow()
    row.enabled = bool(data.enabled)
    row.starts_at = starts
    row.ends_at = ends + timedelta(days=1) if ends else None
    row.subject = subject
    row.body = data.body.replace("\r\n", "\n")
    row.interval_days = int(data.interval_days)
    session.commit()
    return row


def vacation_active(row: Vacation | None, now: datetime) -> bool:
    if row is None or not row.enabled or not row.body.strip():
        return False
    if row.starts_at is not None and now < row.starts_at:
        return False
    return not (row.ends_at is not None and now >= row.ends_at)
