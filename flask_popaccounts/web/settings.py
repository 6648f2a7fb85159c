"""Per-account settings pages: signature, templates and storage (R1, R19; issue 7).

Registered on the Mail Accounts blueprint by :func:`register` (one line in
``views.create_blueprint``); same rules as the other pages: signed-in user, own rows
only (others' ids are 404), CSRF on every form, services only. Everything works
without JavaScript.

Routes::

    GET,POST  /<id>/signature                       text + HTML, placement, preview  signature
    GET       /<id>/templates                       list, reorder, delete            templates
    GET,POST  /<id>/templates/new                   create                           template_new
    GET,POST  /<id>/templates/<tid>/edit            edit                             template_edit
    POST      /<id>/templates/<tid>/delete          delete                           template_delete
    POST      /<id>/templates/<tid>/move            up / down                        template_move
    GET       /storage                              usage per account vs quota       storage
    POST      /<id>/storage/empty-trash             empty the account's Trash        empty_trash
    GET,POST  /<id>/storage/delete-older            confirm, then delete             delete_older
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, IntegerField, RadioField, StringField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange

from ..i18n import N_, isolate, lazy_gettext, ngettext
from ..i18n import gettext as _
from ..runtime import db_session
from .forms import FORMS, _choices, listed, no_control_chars
from .helpers import delete_named, human_size, or_404, require_confirm
from .helpers import owned_account as _account
from .helpers import owner_id as _owner
from .helpers import this_app as _app


class SignatureForm(FlaskForm):
    text = TextAreaField(lazy_gettext("Signature (plain text)"),
                         validators=[Length(max=10_000)],
                         description=lazy_gettext("Added below a line with “-- ”, as mail "
                                                  "programs expect."))
    html = TextAreaField(lazy_gettext("Signature (HTML, optional)"),
                         validators=[Length(max=10_000)],
                         description=lazy_gettext("Used in the HTML version of your mail. "
                                                  "Scripts, forms and remote images are "
                                                  "removed."))
    placement = RadioField(lazy_gettext("Where the signature goes in replies and forwards"),
                           choices=_choices([
        ("below", lazy_gettext("At the end of the message, below the quoted text")),
        ("above", lazy_gettext("Right after my reply, above the quoted text")),
    ]), default="below")
    on_new = BooleanField(lazy_gettext("Add it to new messages"), default=True)
    on_reply = BooleanField(lazy_gettext("Add it to replies"), default=True)
    on_forward = BooleanField(lazy_gettext("Add it to forwarded messages"), default=True)


class TemplateForm(FlaskForm):
    name = StringField(lazy_gettext("Template name"), validators=[
        InputRequired(message=lazy_gettext("Give the template a name.")), DataRequired(
            message=lazy_gettext("Give the template a name.")), Length(max=200),
        no_control_chars])
    subject = StringField(lazy_gettext("Subject"),
                          validators=[Length(max=998), no_control_chars])
    body = TextAreaField(lazy_gettext("Message"), validators=[Length(max=100_000)])


class DeleteOlderForm(FlaskForm):
    days = IntegerField(lazy_gettext("Delete messages sent more than this many days ago"),
                        default=365,
                        validators=[InputRequired(message=lazy_gettext("Enter a number of days.")),
                                    NumberRange(min=1, max=36500,
                                                message=lazy_gettext(
                                                    "Enter a number of days from 1 to 36500."))])
    confirmed = HiddenField(default="")


FORMS.setdefault("signature", SignatureForm)
FORMS.setdefault("template", TemplateForm)
FORMS.setdefault("delete_older", DeleteOlderForm)


def register(bp: Blueprint) -> None:
    """Add the settings routes to the Mail Accounts blueprint."""
    bp.add_url_rule("/<int:account_id>/signature", "signature", signature,
                    methods=["GET", "POST"])
    bp.add_url_rule("/<int:account_id>/templates", "templates", templates)
    bp.add_url_rule("/<int:account_id>/templates/new", "template_new", template_new,
                    methods=["GET", "POST"])
    bp.add_url_rule("/<int:account_id>/templates/<int:template_id>/edit", "template_edit",
                    template_edit, methods=["GET", "POST"])
    bp.add_url_rule("/<int:account_id>/templates/<int:template_id>/delete", "template_delete",
                    template_delete, methods=["POST"])
    bp.add_url_rule("/<int:account_id>/templates/<int:template_id>/move", "template_move",
                    template_move, methods=["POST"])
    bp.add_url_rule("/storage", "storage", storage)
    bp.add_url_rule("/<int:account_id>/storage/empty-trash", "empty_trash", empty_trash,
                    methods=["POST"])
    bp.add_url_rule("/<int:account_id>/storage/delete-older", "delete_older", delete_older,
                    methods=["GET", "POST"])


# -- signature ---------------------------------------------------------------------------


def signature(account_id: int) -> ResponseReturnValue:
    from ..services import settings

    account = _account(account_id)
    session = db_session()
    sig = settings.get_signature(session, account.id)
    form_cls = FORMS["signature"]
    if request.method == "GET":
        form = form_cls(obj=sig) if sig is not None else form_cls()
    else:
        form = form_cls()
    preview: Any = sig
    if form.validate_on_submit():
        data = settings.SignatureInput(
            text=form.text.data or "", html=form.html.data or "",
            placement=form.placement.data or "below", on_new=bool(form.on_new.data),
            on_reply=bool(form.on_reply.data), on_forward=bool(form.on_forward.data))
        if "preview" in request.form:
            # Show what would be saved (the HTML sanitised), without saving.
            from ..storage.models import Signature

            preview = Signature(text=data.text, html=settings.clean_signature_html(data.html),
                                placement=data.placement, on_new=data.on_new,
                                on_reply=data.on_reply, on_forward=data.on_forward)
        else:
            settings.save_signature(session, account, data)
            flash(_("Signature saved for %(address)s.",
                    address=isolate(account.send_from or account.email)), "success")
            return redirect(url_for(".signature", account_id=account.id))
    status = 400 if form.is_submitted() and form.errors else 200
    return render_template("popaccounts/signature.html", account=account, form=form,
                           preview=preview, preview_text=settings.signature_text(preview),
                           unsaved="preview" in request.form), status


# -- templates ---------------------------------------------------------------------------


def _template(account: Any, template_id: int) -> Any:
    from ..services import settings

    return or_404(settings.get_template(db_session(), account.id, template_id))


def templates(account_id: int) -> ResponseReturnValue:
    from ..services import settings

    account = _account(account_id)
    rows = settings.list_templates(db_session(), account.id)
    return render_template("popaccounts/templates.html", account=account, rows=rows,
                           placeholders=settings.PLACEHOLDERS, confirm_form=FORMS["confirm"]())


def _template_form(account: Any, row: Any = None) -> ResponseReturnValue:
    from ..services import settings

    form_cls = FORMS["template"]
    form = form_cls(obj=row) if (row is not None and request.method == "GET") else form_cls()
    if form.validate_on_submit():
        data = settings.TemplateInput(name=form.name.data or "", subject=form.subject.data or "",
                                      body=form.body.data or "")
        session = db_session()
        if row is None:
            row = settings.create_template(session, account, data)
            flash(_("Template “%(name)s” created.", name=isolate(row.name)), "success")
        else:
            settings.update_template(session, row, data)
            flash(_("Template “%(name)s” saved.", name=isolate(row.name)), "success")
        unknown = settings.unknown_placeholders(row.subject, row.body)
        if unknown:
            flash(_("Not a placeholder, left as typed: %(unknown)s. The placeholders are: "
                    "%(known)s.", unknown=listed(unknown),
                    known=listed("{" + k + "}" for k in settings.PLACEHOLDERS)), "warning")
        return redirect(url_for(".templates", account_id=account.id))
    unknown = settings.unknown_placeholders(form.subject.data or "", form.body.data or "")
    status = 400 if form.is_submitted() and form.errors else 200
    return render_template("popaccounts/template_form.html", account=account, form=form,
                           row=row, placeholders=settings.PLACEHOLDERS, unknown=unknown), status


def template_new(account_id: int) -> ResponseReturnValue:
    return _template_form(_account(account_id))


def template_edit(account_id: int, template_id: int) -> ResponseReturnValue:
    account = _account(account_id)
    return _template_form(account, _template(account, template_id))


def template_delete(account_id: int, template_id: int) -> ResponseReturnValue:
    from ..services import settings

    account = _account(account_id)
    return delete_named(_template(account, template_id), settings.delete_template,
                        N_("Template “%(name)s” deleted."), ".templates", account.id)


def template_move(account_id: int, template_id: int) -> ResponseReturnValue:
    from ..services import settings

    account = _account(account_id)
    row = _template(account, template_id)
    require_confirm()
    settings.move_template(db_session(), row, -1 if request.form.get("direction") == "up" else 1)
    return redirect(url_for(".templates", account_id=account.id) + f"#template-{row.id}")


# -- storage -----------------------------------------------------------------------------


def storage() -> ResponseReturnValue:
    from ..services import quota

    view = quota.usage(_app(), db_session(), _owner())
    return render_template("popaccounts/storage.html", usage=view,
                           confirm_form=FORMS["confirm"]())


def empty_trash(account_id: int) -> ResponseReturnValue:
    from ..services import quota

    account = _account(account_id)
    require_confirm()
    count, size = quota.empty_trash(_app(), db_session(), account)
    flash(ngettext("Trash of %(address)s emptied: %(num)s message deleted (%(size)s freed).",
                   "Trash of %(address)s emptied: %(num)s messages deleted (%(size)s freed).",
                   count, address=isolate(account.email), size=isolate(human_size(size))),
          "success")
    return redirect(url_for(".storage"))


def delete_older(account_id: int) -> ResponseReturnValue:
    from ..services import quota

    account = _account(account_id)
    form = FORMS["delete_older"]()
    if request.method == "GET" or not form.validate_on_submit():
        status = 400 if form.is_submitted() else 200
        return render_template("popaccounts/storage_delete_older.html", account=account,
                               form=form, pending=None), status
    session = db_session()
    days = int(form.days.data)
    if form.confirmed.data != "yes":
        count, size = quota.older_than(session, account, days)
        form.confirmed.data = "yes"
        return render_template("popaccounts/storage_delete_older.html", account=account,
                               form=form, pending={"count": count, "size": size, "days": days})
    count, size = quota.delete_older_than(_app(), session, account, days)
    flash(ngettext("%(num)s message of %(address)s sent more than %(age)s ago deleted "
                   "(%(size)s freed).",
                   "%(num)s messages of %(address)s sent more than %(age)s ago deleted "
                   "(%(size)s freed).",
                   count, address=isolate(account.email),
                   age=ngettext("%(num)s day", "%(num)s days", days),
                   size=isolate(human_size(size))), "success")
    return redirect(url_for(".storage"))
