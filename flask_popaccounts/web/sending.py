"""Pages for sending as an account: the outgoing step (R9) and "Send mail as" (R10, R11).

Registered on the Mail Accounts blueprint by :func:`register` (called from
``views.create_blueprint``); same rules as the other pages: signed-in user, own rows
only (others' ids are 404), CSRF on every form, services only.

Routes::

    GET,POST  /<id>/outgoing             outgoing server: custom SMTP, or skip   outgoing
    GET       /send-as                   addresses with their state + Verify     send_as
    GET,POST  /send-as/<sid>/verify      the code dialog (works without JS)      verify_send_as
    POST      /send-as/<sid>/resend      email a new code (rate-limited)         resend_code
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from wtforms import IntegerField, PasswordField, RadioField, SelectField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from ..engine.errors import PopAccountsError
from ..engine.types import Security
from ..i18n import gettext as _
from ..i18n import isolate, lazy_gettext
from ..runtime import db_session
from .forms import FORMS, _choices, allowed_smtp_port, host_name, no_control_chars
from .helpers import explain, or_404, require_confirm
from .helpers import owned_account as _account
from .helpers import owner_id as _owner
from .helpers import this_app as _app


class OutgoingForm(FlaskForm):
    """The outgoing step: a custom SMTP server, or the site's own mail server."""

    mode = RadioField(lazy_gettext("How should mail from this account be sent?"),
                      choices=_choices([
        ("custom", lazy_gettext("Use a custom SMTP server (recommended)")),
        ("system", lazy_gettext("Send through this site's mail server (we email you a code "
                                "to confirm the address)")),
    ]), default="custom")
    smtp_host = StringField(lazy_gettext("Outgoing (SMTP) server"),
                            validators=[Length(max=253), no_control_chars, host_name])
    smtp_port = IntegerField(lazy_gettext("Port"), default=465,
                             validators=[Optional(), allowed_smtp_port])
    smtp_security = SelectField(lazy_gettext("Security"), choices=_choices([
        (Security.SSL.value, lazy_gettext("SSL (port %(port)s)", port=465)),
        (Security.STARTTLS.value, lazy_gettext("STARTTLS (port %(port)s)", port=587)),
    ]), default=Security.SSL.value)
    auth_mode = RadioField(lazy_gettext("Authentication"), choices=_choices([
        ("same", lazy_gettext("Use the same credentials as for incoming mail")),
        ("custom", lazy_gettext("Use these credentials")),
    ]), default="same")
    smtp_username = StringField(lazy_gettext("SMTP username"),
                                validators=[Length(max=320), no_control_chars])
    smtp_password = PasswordField(lazy_gettext("SMTP password"),
                                  validators=[Length(max=1024), no_control_chars])

    def validate(self, extra_validators: Any = None) -> bool:
        ok = super().validate(extra_validators)
        if self.mode.data != "custom":
            for f in (self.smtp_host, self.smtp_port, self.smtp_username, self.smtp_password):
                f.errors = []
            return not (self.csrf_token.errors if hasattr(self, "csrf_token") else [])
        if not (self.smtp_host.data or "").strip():
            self.smtp_host.errors = [*self.smtp_host.errors,
                                     _("Enter the outgoing server name.")]
            ok = False
        if self.smtp_port.data is None:
            self.smtp_port.errors = [*self.smtp_port.errors, _("Enter the port number.")]
            ok = False
        if self.auth_mode.data == "custom":
            if not (self.smtp_username.data or "").strip():
                self.smtp_username.errors = [*self.smtp_username.errors,
                                             _("Enter the username.")]
                ok = False
            if not self.smtp_password.data:
                self.smtp_password.errors = [*self.smtp_password.errors,
                                             _("Enter the password for the outgoing server.")]
                ok = False
        return ok


class VerifyForm(FlaskForm):
    code = StringField(lazy_gettext("Confirmation code"), validators=[
        InputRequired(message=lazy_gettext("Enter the code from the email.")),
        DataRequired(message=lazy_gettext("Enter the code from the email.")),
        Length(max=32), no_control_chars])


FORMS.setdefault("outgoing", OutgoingForm)
FORMS.setdefault("verify", VerifyForm)


def register(bp: Blueprint) -> None:
    """Add the sending routes to the Mail Accounts blueprint."""
    bp.add_url_rule("/<int:account_id>/outgoing", "outgoing", outgoing, methods=["GET", "POST"])
    bp.add_url_rule("/send-as", "send_as", send_as)
    bp.add_url_rule("/send-as/<int:send_as_id>/verify", "verify_send_as", verify_send_as,
                    methods=["GET", "POST"])
    bp.add_url_rule("/send-as/<int:send_as_id>/resend", "resend_code", resend_code,
                    methods=["POST"])


def _row(send_as_id: int) -> Any:
    from ..services import sendas

    return or_404(sendas.owned_send_as(db_session(), _owner(), send_as_id))


def _announce(results: list[tuple[Any, PopAccountsError | None]]) -> None:
    for row, err in results:
        if err is None:
            flash(_("We emailed a confirmation code to %(address)s. Click Verify by the "
                    "address and enter it.", address=isolate(row.address)), "success")
        else:
            flash(_("We could not email a code to %(address)s: %(problem)s",
                    address=isolate(row.address), problem=explain(err)), "error")


def outgoing(account_id: int) -> ResponseReturnValue:
    from ..services import outgoing, sendas

    account = _account(account_id)
    form_cls = FORMS["outgoing"]
    if request.method == "GET":
        data: dict[str, Any] = {}
        if account.smtp_host:
            data = {"mode": "custom", "smtp_host": account.smtp_host,
                    "smtp_port": account.smtp_port, "smtp_security": account.smtp_security,
                    "auth_mode": "custom" if account.smtp_auth_mode == "custom" else "same",
                    "smtp_username": account.smtp_username or ""}
        form = form_cls(data=data) if data else form_cls()
    else:
        form = form_cls()
    ctx = {"account": account}
    if not form.validate_on_submit():
        status = 400 if form.is_submitted() else 200
        form.smtp_password.data = ""
        return render_template("popaccounts/outgoing.html", form=form, test_error=None,
                               **ctx), status

    session = db_session()
    if form.mode.data == "system":
        try:
            pending = outgoing.use_system_relay(session, _app(), account)
        except PopAccountsError as exc:
            session.rollback()
            return render_template("popaccounts/outgoing.html", form=form, test_error=exc,
                                   **ctx), 422
        _announce(sendas.send_codes(session, _app(), pending))
        return redirect(url_for(".send_as"))

    data_in = outgoing.OutgoingInput(
        host=form.smtp_host.data, port=int(form.smtp_port.data),
        security=Security(form.smtp_security.data), auth_mode=form.auth_mode.data,
        username=(form.smtp_username.data or "").strip(),
        password=form.smtp_password.data or None,
    )
    try:
        outgoing.test_outgoing(_app(), account, data_in)
    except PopAccountsError as exc:
        current_app.logger.info("popaccounts: outgoing test failed for owner %s: %s (%s)",
                                _owner(), exc.code, exc.detail)
        form.smtp_password.data = ""
        target = getattr(form, str(getattr(exc, "field", "") or ""), None)
        if target is not None:  # a refusal that belongs to one field is shown there
            target.errors = [*target.errors, explain(exc, message=True)]
        return render_template("popaccounts/outgoing.html", form=form,
                               test_error=None if target is not None else exc, **ctx), 422
    pending = outgoing.save_outgoing(session, _app(), account, data_in)
    flash(_("Outgoing server saved: mail from %(address)s goes out through %(host)s.",
            address=isolate(account.send_from or account.email),
            host=isolate(account.smtp_host)), "success")
    _announce(sendas.send_codes(session, _app(), pending))
    return redirect(url_for(".send_as"))


def _send_as_page(open_row: Any = None, form: Any = None, error: PopAccountsError | None = None,
                  status: int = 200) -> ResponseReturnValue:
    from ..services import sendas

    rows = sendas.send_as_list(db_session(), _app(), _owner())
    forms = {}
    for view in rows:
        if view.state != "verified":
            forms[view.row.id] = (form if open_row is not None and view.row.id == open_row.id
                                  else FORMS["verify"](formdata=None))
    return render_template("popaccounts/send_as.html", rows=rows, verify_forms=forms,
                           open_id=open_row.id if open_row is not None else None,
                           verify_error=error, confirm_form=FORMS["confirm"]()), status


def send_as() -> ResponseReturnValue:
    return _send_as_page()


def verify_send_as(send_as_id: int) -> ResponseReturnValue:
    from ..services import verification

    row = _row(send_as_id)
    if row.verified_at is not None:
        flash(_("%(address)s is already verified.", address=isolate(row.address)), "success")
        return redirect(url_for(".send_as"))
    form = FORMS["verify"]()
    if request.method == "GET" or not form.validate_on_submit():
        status = 400 if form.is_submitted() else 200
        return _send_as_page(row, form, None, status)
    try:
        verification.check_code(db_session(), _app(), row, form.code.data or "")
    except PopAccountsError as exc:
        db_session().rollback()
        form.code.data = ""
        return _send_as_page(row, form, exc, 422)
    address = isolate(row.address)
    if row.kind == "from":
        flash(_("%(address)s is verified. You can now send mail as %(address)s.",
                address=address), "success")
    else:
        flash(_("%(address)s is verified. You can now send mail with Reply-To %(address)s.",
                address=address), "success")
    return redirect(url_for(".send_as"))


def resend_code(send_as_id: int) -> ResponseReturnValue:
    from ..services import sendas

    row = _row(send_as_id)
    require_confirm()
    if row.verified_at is not None:
        return redirect(url_for(".send_as"))
    try:
        sendas.send_code(db_session(), _app(), row)
    except PopAccountsError as exc:
        flash(explain(exc), "error")
        return redirect(url_for(".send_as"))
    _announce([(row, None)])
    return redirect(url_for(".send_as"))
