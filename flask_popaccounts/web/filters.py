"""Pages for an account's filters and its vacation reply (R1; issue 7 items 3 and 4).

Registered on the Mail Accounts blueprint by :func:`register` (one line in
``views.create_blueprint``). Same rules as the other pages: signed-in user, own
accounts only (other ids are 404), CSRF on every form, services only.

Routes::

    GET        /<id>/filters                      the ordered list          filters
    GET,POST   /<id>/filters/new                  rule editor (new)         filter_new
    GET,POST   /<id>/filters/<fid>/edit           rule editor (edit)        filter_edit
    POST       /<id>/filters/<fid>/move/<dir>     up / down                 filter_move
    POST       /<id>/filters/<fid>/delete         delete                    filter_delete
    POST       /<id>/filters/<fid>/run            run on existing mail      filter_run
    GET,POST   /<id>/vacation                     vacation reply            vacation
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import NotFound

from ..engine import filters as rules
from ..i18n import N_, isolate, ngettext
from ..i18n import gettext as _
from ..runtime import db_session, get_state
from .forms import FORMS
from .helpers import delete_named, isolated_markup, or_404, require_confirm
from .helpers import owned_account as _account

#: Editor rows shown beyond the rule's own (empty rows are ignored on save).
SPARE_ROWS = 2
MAX_ROWS = rules.MAX_CONDITIONS


def _now() -> Any:
    return get_state().clock()


def register(bp: Blueprint) -> None:
    """Add the filter and vacation routes to the Mail Accounts blueprint."""
    bp.add_url_rule("/<int:account_id>/filters", "filters", filters_page)
    bp.add_url_rule("/<int:account_id>/filters/new", "filter_new", filter_edit,
                    methods=["GET", "POST"])
    bp.add_url_rule("/<int:account_id>/filters/<int:rule_id>/edit", "filter_edit", filter_edit,
                    methods=["GET", "POST"])
    bp.add_url_rule("/<int:account_id>/filters/<int:rule_id>/move/<direction>", "filter_move",
                    filter_move, methods=["POST"])
    bp.add_url_rule("/<int:account_id>/filters/<int:rule_id>/delete", "filter_delete",
                    filter_delete, methods=["POST"])
    bp.add_url_rule("/<int:account_id>/filters/<int:rule_id>/run", "filter_run", filter_run,
                    methods=["POST"])
    bp.add_url_rule("/<int:account_id>/vacation", "vacation", vacation_page,
                    methods=["GET", "POST"])


def _rule(account_id: int, rule_id: int) -> Any:
    from ..services import filtering

    return or_404(filtering.get_rule(db_session(), account_id, rule_id))


def filters_page(account_id: int) -> ResponseReturnValue:
    from ..services import filtering

    account = _account(account_id)
    rows = filtering.list_rules(db_session(), account.id)
    return render_template("popaccounts/filters.html", account=account, rows=rows,
                           # the summary in the reader's language, its values in <bdi>
                           describe=lambda r: isolated_markup(filtering.describe(r)),
                           confirm_form=FORMS["confirm"]())


def _rows_from_request() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    conds = []
    for i in range(MAX_ROWS):
        if f"cond-{i}-field" not in request.form:
            continue
        conds.append({k: request.form.get(f"cond-{i}-{k}", "")
                      for k in ("field", "op", "value", "header")})
    acts = []
    for i in range(rules.MAX_ACTIONS):
        if f"act-{i}-kind" not in request.form:
            continue
        acts.append({k: request.form.get(f"act-{i}-{k}", "") for k in ("kind", "value")})
    return conds, acts


def filter_edit(account_id: int, rule_id: int | None = None) -> ResponseReturnValue:
    from ..services import filtering

    account = _account(account_id)
    session = db_session()
    row = _rule(account.id, rule_id) if rule_id is not None else None
    problems: list[str] = []
    if request.method == "POST":
        require_confirm()
        conds, acts = _rows_from_request()
        name = request.form.get("name", "")
        match_all = request.form.get("match", "all") != "any"
        enabled = request.form.get("enabled") == "y"
        try:
            saved = filtering.save_rule(session, account, name=name, match_all=match_all,
                                        enabled=enabled, conditions=conds, actions=acts,
                                        rule=row, now=_now())
        except rules.RuleInvalid as exc:
            session.rollback()
            problems = exc.problems
        else:
            flash(_("Rule “%(name)s” saved.", name=isolate(saved.name)), "success")
            return redirect(url_for(".filters", account_id=account.id))
    else:
        name = row.name if row is not None else ""
        match_all = bool(row.match_all) if row is not None else True
        enabled = bool(row.enabled) if row is not None else True
        conds = json.loads(row.conditions_json) if row is not None else []
        acts = json.loads(row.actions_json) if row is not None else []
    conds = [c for c in conds if any(str(v).strip() for v in c.values())]
    acts = [a for a in acts if a.get("kind")]
    conds += [{}] * max(1, min(SPARE_ROWS, MAX_ROWS - len(conds)))
    acts += [{}] * max(1, min(SPARE_ROWS, rules.MAX_ACTIONS - len(acts)))
    verified = sorted(filtering.verified_addresses(session, account.owner_id))
    return render_template(
        "popaccounts/filters_edit.html", account=account, row=row, name=name,
        match_all=match_all, enabled=enabled, conds=conds, acts=acts, problems=problems,
        fields=rules.FIELD_LABELS, ops=rules.OP_LABELS, text_ops=rules.TEXT_OPS,
        size_ops=rules.SIZE_OPS, actions=rules.ACTION_LABELS, verified=verified,
        confirm_form=FORMS["confirm"](),
    ), (422 if problems else 200)


def filter_move(account_id: int, rule_id: int, direction: str) -> ResponseReturnValue:
    from ..services import filtering

    account = _account(account_id)
    _rule(account.id, rule_id)
    require_confirm()
    if direction not in ("up", "down"):
        raise NotFound()
    filtering.move_rule(db_session(), account.id, rule_id, -1 if direction == "up" else 1)
    return redirect(url_for(".filters", account_id=account.id) + f"#rule-{rule_id}")


def filter_delete(account_id: int, rule_id: int) -> ResponseReturnValue:
    from ..services import filtering

    account = _account(account_id)
    return delete_named(_rule(account.id, rule_id), filtering.delete_rule,
                        N_("Rule “%(name)s” deleted."), ".filters", account.id)


def filter_run(account_id: int, rule_id: int) -> ResponseReturnValue:
    from ..services import filtering

    account = _account(account_id)
    row = _rule(account.id, rule_id)
    require_confirm()
    n = filtering.run_on_existing(db_session(), account.id, row)
    flash(ngettext("Rule “%(name)s” applied to existing mail: %(num)s message matched. "
                   "(Existing mail is never forwarded.)",
                   "Rule “%(name)s” applied to existing mail: %(num)s messages matched. "
                   "(Existing mail is never forwarded.)", n, name=isolate(row.name)), "success")
    return redirect(url_for(".filters", account_id=account.id))


def vacation_page(account_id: int) -> ResponseReturnValue:
    from ..services import vacation

    account = _account(account_id)
    session = db_session()
    row = vacation.get_vacation(session, account.id)
    problems: list[str] = []
    if request.method == "POST":
        require_confirm()
        try:
            interval = int(request.form.get("interval_days", "7") or 7)
        except ValueError:
            interval = 0
        data = vacation.VacationInput(
            enabled=request.form.get("enabled") == "y",
            starts_on=request.form.get("starts_on", ""), ends_on=request.form.get("ends_on", ""),
            subject=request.form.get("subject", ""), body=request.form.get("body", ""),
            interval_days=interval)
        try:
            vacation.save_vacation(session, account, data, now=_now())
        except rules.RuleInvalid as exc:
            session.rollback()
            problems = exc.problems
        else:
            flash(_("Vacation reply on.") if data.enabled else _("Vacation reply off."),
                  "success")
            return redirect(url_for(".vacation", account_id=account.id))
        values = {"enabled": data.enabled, "starts_on": data.starts_on, "ends_on": data.ends_on,
                  "subject": data.subject, "body": data.body,
                  "interval_days": request.form.get("interval_days", "")}
    else:
        values = {"enabled": bool(row and row.enabled), "subject": row.subject if row else "",
                  "body": row.body if row else "", "interval_days": row.interval_days if row else 7,
                  "starts_on": row.starts_at.date().isoformat() if row and row.starts_at else "",
                  "ends_on": (row.ends_at - timedelta(days=1)).date().isoformat()
                  if row and row.ends_at else ""}
    from ..services import sendas

    active = vacation.vacation_active(row, get_state().clock()) if row is not None else False
    can_send = sendas.is_verified(session, account, "from",
                                 (account.send_from or account.email).strip())
    return render_template("popaccounts/vacation.html", account=account, values=values,
                           problems=problems, active=active, can_send=can_send,
                           confirm_form=FORMS["confirm"]()), (422 if problems else 200)
