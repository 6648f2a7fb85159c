"""Compose, reply and forward in the example webmail, through flask-popaccounts' sending.

From offers only the user's verified send-as addresses; reply and forward start from
the account the message arrived on. Everything is checked again on the server side by
``services.sending.send_message`` (unverified From/Reply-To, CR/LF, strict addresses),
so a crafted POST gets the same clear refusal as the page would show.

Signatures (``services.settings``): the page puts the From account's signature block
into the body per its settings (new/reply/forward, below everything or above the
quoted text) and records whose it is in ``sig_for``. Switching From swaps the block
(the extension's ``signature-swap.js``); without JavaScript the server does the same
swap on send when ``sig_for`` is not the chosen account, and never adds a block that
is already there. Templates are inserted by posting the form with "Insert" (the page
comes back with the template applied; nothing is sent).
"""

from __future__ import annotations

from email import message_from_bytes, policy
from typing import Any

from flask import Flask, abort, flash, redirect, render_template, request, url_for
from flask_babel import format_datetime, gettext
from flask_login import current_user, login_required
from werkzeug.exceptions import NotFound

from flask_popaccounts import db_session
from flask_popaccounts import i18n as popaccounts_i18n
from flask_popaccounts.engine.errors import PopAccountsError

from .languages import N_, isolate_rtl
from .mail import side_pane

_FIELDS = ("to", "cc", "bcc", "subject", "body", "in_reply_to", "references")
_MODES = ("new", "reply", "forward")
_EXTRA = ("sig_for", "sig_mode", "quote_line")  #: the signature's bookkeeping fields
#: The form's fields as a send error names them (engine.safety / parse_addresses).
_FIELD_LABELS = {"from": N_("From"), "to": N_("To"), "cc": N_("Cc"), "bcc": N_("Bcc"),
                 "subject": N_("Subject"), "reply-to": N_("Reply-To"),
                 "reply_to": N_("Reply-To"), "body": N_("Message")}


def _prefixed(prefix: str, subject: str) -> str:
    return subject if subject.lower().startswith(prefix.lower()) else f"{prefix} {subject}"


def _quote(text: str | None) -> str:
    return "\n".join(f"> {line}" for line in (text or "").splitlines())


def register_compose(app: Flask) -> None:
    from flask_popaccounts.services import accounts as account_svc
    from flask_popaccounts.services import reading, sendas, sending, settings

    def owner() -> str:
        return str(current_user.get_id())

    def signatures(choices: list[Any], mode: str) -> dict[str, dict[str, str]]:
        """Each From account's signature block for this kind of mail (for the script)."""
        out = {}
        for account, _addr in choices:
            sig = settings.get_signature(db_session(), account.id)
            out[str(account.id)] = {"block": settings.signature_block(sig, mode),
                                    "placement": sig.placement if sig else "below"}
        return out

    def page(values: dict[str, Any], account_id: int | None, error: PopAccountsError | None,
             status: int = 200) -> Any:
        session = db_session()
        choices = sendas.from_choices(session, owner())
        accounts = account_svc.list_accounts(session, owner())
        mode = values.get("sig_mode") or "new"
        return render_template(
            "compose.html", values=values, choices=choices, account_id=account_id,
            error=error, accounts=accounts, signatures=signatures(choices, mode),
            templates=settings.templates_by_account(session, [a for a, _ in choices]),
            mode=mode if mode in _MODES else "new", pane=side_pane(),
            account=next((a for a in accounts if a.id == account_id), None),
            current_folder=None, **explained(error),
        ), status

    def explained(error: PopAccountsError | None) -> dict[str, str]:
        """A send error in the user's language: its texts are the extension's (its
        catalogue); the field is named as this form labels it when it is one of ours."""
        if error is None:
            return {}
        field = str(getattr(error, "field", "") or "")
        label = _FIELD_LABELS.get(field.lower())
        return {"error_title": popaccounts_i18n.gettext(error.title),
                "error_help": popaccounts_i18n.gettext(error.help),
                "error_field": (gettext(label) if label else
                                popaccounts_i18n.gettext(field) if field else "")}

    def with_signature(values: dict[str, Any], account: Any, mode: str) -> dict[str, Any]:
        """The page's first body: the account's signature block put in per its settings."""
        sig = settings.get_signature(db_session(), account.id) if account is not None else None
        block = settings.signature_block(sig, mode)
        body = values["body"]
        quote = values.get("quote_line", "")
        start = body.find(quote) if quote else -1
        values["body"] = settings.insert_block(body, block, sig.placement if sig else "below",
                                               start if start >= 0 else None)
        values["sig_mode"] = mode
        values["sig_for"] = str(account.id) if account is not None else ""
        return values

    def swap_for(values: dict[str, Any], account: Any) -> str:
        """The body with the chosen From's signature (no-JS path; never twice)."""
        mode = values.get("sig_mode") if values.get("sig_mode") in _MODES else "new"
        new_sig = settings.get_signature(db_session(), account.id)
        old_sig = None
        old_id = values.get("sig_for") or ""
        if old_id.isdigit() and int(old_id) != account.id:
            try:
                old_acct = account_svc.get_owned_account(db_session(), owner(), int(old_id))
                old_sig = settings.get_signature(db_session(), old_acct.id)
            except NotFound:
                old_sig = None
        elif old_id.isdigit():
            return str(values["body"])  # already this account's (or removed by the user)
        body = values["body"].replace("\r\n", "\n")
        quote = values.get("quote_line", "")
        start = body.find(quote) if quote else -1
        return settings.swap_signature(
            body, old_block=settings.signature_block(old_sig, str(mode)),
            new_block=settings.signature_block(new_sig, str(mode)),
            placement=new_sig.placement if new_sig else "below",
            quote_start=start if start >= 0 else None)

    @app.route("/compose", methods=["GET", "POST"])
    @login_required
    def compose() -> Any:
        session = db_session()
        if request.method == "GET":
            account_id = request.args.get("account_id", type=int)
            choices = sendas.from_choices(session, owner())
            chosen = next((a for a, _ in choices if a.id == account_id),
                          choices[0][0] if choices else None)
            values = with_signature({f: "" for f in _FIELDS}, chosen, "new")
            return page(values, chosen.id if chosen is not None else account_id, None)
        values = {f: request.form.get(f, "") for f in (*_FIELDS, *_EXTRA)}
        account_id = request.form.get("account_id", type=int)
        if account_id is None:
            abort(400)
        account = account_svc.get_owned_account(session, owner(), account_id)
        values["body"] = swap_for(values, account)
        values["sig_for"] = str(account.id)
        if request.form.get("insert_template"):
            template_id = request.form.get("template_id", type=int)
            row = settings.get_owned_template(session, owner(), template_id or 0)
            if row is None:
                abort(404)
            values["subject"], values["body"] = settings.apply_template(
                row, account, to=values["to"], subject=values["subject"], body=values["body"])
            return page(values, account.id, None)
        sig = settings.get_signature(session, account.id)
        mode = values["sig_mode"] if values["sig_mode"] in _MODES else "new"
        html = settings.html_body(values["body"], settings.signature_block(sig, mode),
                                  sig.html if sig else "")
        draft = sending.Draft(**{f: values[f] for f in _FIELDS}, html=html)
        try:
            sending.send_message(session, app, account, draft)
        except PopAccountsError as exc:
            session.rollback()
            return page(values, account_id, exc, 422)
        flash(gettext("Message sent from %(address)s; a copy is in Sent.",
                      address=popaccounts_i18n.isolate(account.send_from or account.email)))
        return redirect(url_for("mailbox", account_id=account.id))

    def _original(account_id: int, message_id: int) -> tuple[Any, Any, Any, Any]:
        session = db_session()
        account = account_svc.get_owned_account(session, owner(), account_id)
        meta = reading.get_message(session, account.id, message_id)
        if meta is None:
            abort(404)
        readable = reading.read_message(session, meta.id)
        raw = reading.read_original(session, meta.id)
        header_end = raw.find(b"\r\n\r\n")
        headers = message_from_bytes(raw[: header_end + 4 if header_end >= 0 else len(raw)],
                                     policy=policy.default)
        return account, meta, readable, headers

    @app.route("/mail/<int:account_id>/<int:message_id>/reply")
    @login_required
    def reply(account_id: int, message_id: int) -> Any:
        account, meta, msg, headers = _original(account_id, message_id)
        msgid = (meta.message_id or "").strip()
        refs = " ".join(x for x in (str(headers.get("References", "") or "").strip(), msgid) if x)
        quote_line = gettext("On %(date)s, %(sender)s wrote:",
                             date=format_datetime(meta.sent_at, "medium"),
                             sender=isolate_rtl(msg.from_))
        values = {
            "to": msg.reply_to or msg.from_, "cc": "", "bcc": "",
            "subject": _prefixed("Re:", msg.subject or ""),
            "body": f"\n\n{quote_line}\n" + _quote(msg.text),
            "in_reply_to": msgid, "references": refs, "quote_line": quote_line,
        }
        return page(with_signature(values, account, "reply"), account.id, None)

    @app.route("/mail/<int:account_id>/<int:message_id>/forward")
    @login_required
    def forward(account_id: int, message_id: int) -> Any:
        account, meta, msg, _headers = _original(account_id, message_id)
        forward_line = gettext("---------- Forwarded message ----------")
        values = {
            "to": "", "cc": "", "bcc": "",
            "subject": _prefixed("Fwd:", msg.subject or ""),
            "body": f"\n\n{forward_line}\n" + "\n".join((
                gettext("From: %(sender)s", sender=isolate_rtl(msg.from_)),
                gettext("Date: %(date)s", date=format_datetime(meta.sent_at, "medium")),
                gettext("Subject: %(subject)s",
                        subject=isolate_rtl(msg.subject)),
                gettext("To: %(recipients)s", recipients=isolate_rtl(msg.to)),
            )) + f"\n\n{msg.text or ''}",
            "in_reply_to": "", "references": "", "quote_line": forward_line,
        }
        return page(with_signature(values, account, "forward"), account.id, None)
