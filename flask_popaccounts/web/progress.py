"""The account cards' live figures (R16): one JSON poll for the whole Mail Accounts page.

Routes (under ``POPACCOUNTS_URL_PREFIX``)::

    GET  /progress.json          every card of the signed-in owner      progress_all
    GET  /<id>/progress.json     one card (older pages, hosts)          progress

The page (``static/popaccounts/progress.js``) asks ``progress_all`` every few seconds
while it is visible, faster while a fetch runs or is about to start (``poll_ms`` in the
answer says when to ask again), and shows each card's bar from it: a first sync started
by the wizard, the scheduler or "Check now" appears by itself, without a reload. Every
word the card shows is made here, translated (the script holds no text), and the same
:func:`card_live` renders the card without JS, as of page load.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from ..i18n import format_datetime, format_number, ngettext
from ..i18n import gettext as _
from ..runtime import db_session, get_state
from .helpers import human_size, owned_account
from .helpers import owner_id as _owner
from .helpers import this_app as _app

#: How soon the page asks again (milliseconds): while a fetch of one of its cards runs;
#: while one is due to start (a saved account waits for a scheduler, which may be in
#: another process or, on a host that runs none, nowhere); otherwise (the scheduler's
#: own checks, "Check now" in another tab).
POLL_RUNNING_MS = 1000
POLL_DUE_MS = 2000
POLL_IDLE_MS = 5000


def register(bp: Blueprint) -> None:
    """The progress routes (JSON)."""
    bp.add_url_rule("/progress.json", "progress_all", progress_all)
    bp.add_url_rule("/<int:account_id>/progress.json", "progress", progress)


def last_checked(when: datetime | None) -> str:
    """The card's "Last checked" value, in the user's time zone and language."""
    if when is None:
        return _("Not yet")
    return format_datetime(when)


def progress_text(info: dict[str, Any]) -> str:
    """"1,234 of 2,000 messages", or "Connecting…" before the totals are known."""
    total = int(info.get("total") or 0)
    if not total:
        return _("Connecting…")
    return ngettext("%(done)s of %(num)s message", "%(done)s of %(num)s messages", total,
                    done=format_number(int(info.get("done") or 0)))


def result_text(stored: int | None) -> str | None:
    """What the last fetch did, when it succeeded: "2,000 messages fetched"."""
    if stored is None:
        return None
    if stored == 0:
        return _("No new messages")
    return ngettext("%(num)s message fetched", "%(num)s messages fetched", stored)


def card_live(account: Any, info: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    """One card's live figures: the running fetch's bar, the last result, the fields.

    ``info``: the running fetch's progress (services.progress), None when none runs.
    ``watch``: a fetch runs or is due to start (a just-saved account's first one), so
    the page asks again soon. ``attempt`` changes with every fetch that ended.
    """
    from ..services import health, scheduling

    running = info is not None and bool(info.get("running"))
    status = health.status_view(account)
    attempt, last_ok = account.last_attempt_at, account.last_success_at
    return {
        "id": account.id,
        "running": running,
        "watch": running or scheduling.is_due(account, now),
        "done": int(info.get("done") or 0) if running and info else 0,
        "total": int(info.get("total") or 0) if running and info else 0,
        "text": progress_text(info) if running and info else "",
        "result": None if running else result_text(account.last_fetch_stored),
        "stored": account.last_fetch_stored,
        "attempt": attempt.isoformat() if attempt else "",
        "status": {"label": status.label, "explanation": status.explanation,
                   "tone": status.tone},
        "message_count": int(account.message_count or 0),
        "message_count_text": format_number(int(account.message_count or 0)),
        "storage_text": human_size(account.bytes_stored),
        "last_checked": last_checked(account.last_success_at),
        "last_checked_at": last_ok.isoformat() if last_ok else None,
    }


def progress_all() -> ResponseReturnValue:
    """Every card of the signed-in owner's page, in one answer (never others' accounts)."""
    from ..services import progress as progress_svc

    now = get_state(_app()).clock()
    cards = [card_live(account, info, now) for account, info in
             progress_svc.owner_fetches(_app(), db_session(), _owner())]
    poll = (POLL_RUNNING_MS if any(c["running"] for c in cards)
            else POLL_DUE_MS if any(c["watch"] for c in cards) else POLL_IDLE_MS)
    return jsonify({"accounts": cards, "poll_ms": poll})


def progress(account_id: int) -> ResponseReturnValue:
    """One card's figures, and its fetch's raw progress (``progress``)."""
    from ..services import progress as progress_svc

    account = owned_account(account_id)
    db_session().refresh(account)
    info = progress_svc.fetch_progress(account.id)
    running = info if info and info.get("running") else None
    live = card_live(account, running, get_state(_app()).clock())
    return jsonify({**live, "progress": info, "last_success_at": live["last_checked_at"]})
