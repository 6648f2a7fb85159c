"""The account card's problem messages: Retry one set aside, fetch one too large anyway.

Routes (owner-scoped like every account page: another user's account is a 404)::

    POST  /<id>/problems/retry          retry a message set aside      problem_retry
    POST  /<id>/problems/fetch-anyway   fetch one over the size limit  problem_fetch_anyway

Both take the message's ``uidl`` and the CSRF token, and make the account due at once.
The card's sentences come from :func:`..services.mailproblems.card_lines` (the
``popaccounts_mail_problems(account)`` template global).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue

from ..i18n import gettext as _
from ..runtime import db_session, get_state
from .helpers import owned_account, require_confirm, this_app


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/<int:account_id>/problems/retry", "problem_retry", retry,
                    methods=["POST"])
    bp.add_url_rule("/<int:account_id>/problems/fetch-anyway", "problem_fetch_anyway",
                    fetch_anyway, methods=["POST"])
    bp.app_context_processor(lambda: {"popaccounts_mail_problems": mail_problems})


def mail_problems(account: Any) -> list[Any]:
    from ..services import mailproblems

    return mailproblems.card_lines(db_session(), account)


def _act(account_id: int, action: str) -> ResponseReturnValue:
    from ..services import mailproblems

    account = owned_account(account_id)
    require_confirm()
    uidl = request.form.get("uidl", "")
    do = mailproblems.retry if action == "retry" else mailproblems.fetch_anyway
    if do(db_session(), account, uidl, now=get_state(this_app()).clock()):
        flash(_("The message will be downloaded at the next check, which starts now.")
              if action == "retry" else
              _("This message will be downloaded at the next check, despite its size."),
              "success")
    else:
        flash(_("That message is no longer waiting (already downloaded, or gone from the "
                "server)."), "info")
    return redirect(url_for(".index") + f"#account-{account.id}")


def retry(account_id: int) -> ResponseReturnValue:
    return _act(account_id, "retry")


def fetch_anyway(account_id: int) -> ResponseReturnValue:
    return _act(account_id, "fetch_anyway")
