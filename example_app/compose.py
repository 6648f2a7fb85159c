"""Compose, reply and forward in the example webmail, through flask-popaccounts' sending.

From offers only the user's verified send-as addresses; reply and forward start from
the account the message arrived on. Everything is checked again on the server side by
``services.sending.send_message`` (unverified From/Reply-To, CR/LF, strict addresses),
so a crafted POST gets the same clear refusal as the page would show.
"""

from __future__ import annotations

from email import message_from_bytes, policy
from typing import Any

from flask import Flask, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from flask_popaccounts import db_session
from flask_popaccounts.engine.errors import PopAccountsError

_FIELDS = ("to", "cc", "bcc", "subject", "body", "in_reply_to", "references")


def _prefixed(prefix: str, subject: str) -> str:
    return subject if subject.lower().startswith(prefix.lower()) else f"{prefix} {subject}"


def _quote(text: str | None) -> str:
    return "\n".join(f"> {line}" for line in (text or "").splitlines())


def register_compose(app: Flask) -> None:
    from flask_popaccounts import store
    from flask_popaccounts.services import accounts as account_svc
    from flask_popaccounts.services import sending
    from flask_popaccounts.services.reading import read_message

    def owner() -> str:
        return str(current_user.get_id())

    def page(values: dict[str, Any], account_id: int | None, error: PopAccountsError | None,
             status: int = 200) -> Any:
        choices = sending.from_choices(db_session(), owner())
        accounts = account_svc.list_accounts(db_session(), owner())
        return render_template("compose.html", values=values, choices=choices,
                               account_id=account_id, error=error, accounts=accounts), status

    @app.route("/compose", methods=["GET", "POST"])
    @login_required
    def compose() -> Any:
        session = db_session()
        if request.method == "GET":
            account_id = request.args.get("account_id", type=int)
            return page({f: "" for f in _FIELDS}, account_id, None)
        values = {f: request.form.get(f, "") for f in _FIELDS}
        account_id = request.form.get("account_id", type=int)
        if account_id is None:
            abort(400)
        account = account_svc.get_owned_account(session, owner(), account_id)
        draft = sending.Draft(**values)
        try:
            sending.send_message(session, app, account, draft)
        except PopAccountsError as exc:
            session.rollback()
            return page(values, account_id, exc, 422)
        flash(f"Message sent from {account.send_from or account.email}; a copy is in Sent.")
        return redirect(url_for("mailbox", account_id=account.id))

    def _original(account_id: int, message_id: int) -> tuple[Any, Any, Any, Any]:
        session = db_session()
        account = account_svc.get_owned_account(session, owner(), account_id)
        meta = store.get_message(session, account.id, message_id)
        if meta is None:
            abort(404)
        readable = read_message(session, meta.id)
        raw = store.read_raw(session, meta.id)
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
        values = {
            "to": msg.reply_to or msg.from_, "cc": "", "bcc": "",
            "subject": _prefixed("Re:", msg.subject or ""),
            "body": f"\n\nOn {meta.sent_at:%Y-%m-%d %H:%M} UTC, {msg.from_} wrote:\n"
                    + _quote(msg.text),
            "in_reply_to": msgid, "references": refs,
        }
        return page(values, account.id, None)

    @app.route("/mail/<int:account_id>/<int:message_id>/forward")
    @login_required
    def forward(account_id: int, message_id: int) -> Any:
        account, meta, msg, _headers = _original(account_id, message_id)
        values = {
            "to": "", "cc": "", "bcc": "",
            "subject": _prefixed("Fwd:", msg.subject or ""),
            "body": "\n\n---------- Forwarded message ----------\n"
                    f"From: {msg.from_}\nDate: {meta.sent_at:%Y-%m-%d %H:%M} UTC\n"
                    f"Subject: {msg.subject}\nTo: {msg.to}\n\n{msg.text or ''}",
            "in_reply_to": "", "references": "",
        }
        return page(values, account.id, None)
