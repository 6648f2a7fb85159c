"""The mailbox pages of the example webmail: folders, the message page, message actions.

Everything goes through the extension's public services, as a real host's pages would:
``accounts.get_owned_account`` (an account of another user is a 404) and
``services.reading`` (folders with their counts, a folder's mail newest first by sent
date, opening a message, and the actions). URLs:

- ``/mail/<account>/`` the Inbox; ``/mail/<account>/folder/<folder>/`` any folder;
- ``/mail/<account>/<message>`` a message (opening it marks it read), with its body,
  parts and original below it;
- ``POST /mail/<account>/actions`` (CSRF): ``action`` = ``read``, ``unread``,
  ``delete`` or ``move`` (with ``folder_id``) for the ``message_id`` values posted.
  Every message must be the account's, else 404. Delete moves to Trash; deleting what
  is in Trash is for good and asks first (``confirm``).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext, ngettext
from flask_login import current_user, login_required

from flask_popaccounts import db_session
from flask_popaccounts.i18n import isolate
from flask_popaccounts.services import accounts as account_svc
from flask_popaccounts.services import health, reading
from flask_popaccounts.web.security import (
    FRAME_SANDBOX,
    download_response,
    message_body_response,
)

from .languages import folder_text

PAGE_SIZE = 50
ACTIONS = ("read", "unread", "delete", "move")


def owner() -> str:
    return str(current_user.get_id())


def side_pane() -> list[dict[str, Any]]:
    """The side pane: each of the user's accounts, its health and its folders."""
    session = db_session()
    accounts = account_svc.list_accounts(session, owner())
    folders = reading.folders(session, [a.id for a in accounts])
    return [{"account": a, "status": health.status_view(a), "folders": folders[a.id],
             "unread": sum(f.unread for f in folders[a.id] if f.role == "inbox")}
            for a in accounts]


def folder_url(folder: reading.FolderItem, **args: Any) -> str:
    """The page of a folder (the Inbox is the account's own page)."""
    if folder.role == "inbox":
        return url_for("mailbox", account_id=folder.account_id, **args)
    return url_for("folder", account_id=folder.account_id, folder_id=folder.id, **args)


def _local_next(default: str) -> str:
    from . import _local_path

    target = request.form.get("next") or ""
    return target if _local_path(target) else default


def register_mail(app: Flask) -> None:
    @app.route("/mail/")
    @login_required
    def mailbox_home() -> Any:
        accounts = account_svc.list_accounts(db_session(), owner())
        if accounts:  # default account first
            return redirect(url_for("mailbox", account_id=accounts[0].id))
        return render_template("mailbox.html", pane=[], account=None, messages=[],
                               page=1, has_more=False, current_folder=None)

    @app.route("/mail/<int:account_id>/")
    @login_required
    def mailbox(account_id: int) -> Any:
        return _folder_page(account_id, None)

    @app.route("/mail/<int:account_id>/folder/<int:folder_id>/")
    @login_required
    def folder(account_id: int, folder_id: int) -> Any:
        return _folder_page(account_id, folder_id)

    def _folder_page(account_id: int, folder_id: int | None) -> Any:
        session = db_session()
        account = account_svc.get_owned_account(session, owner(), account_id)
        current = reading.folder(session, account.id, folder_id)
        if current is None:
            abort(404)
        if folder_id is not None and current.role == "inbox":
            return redirect(folder_url(current))  # one address per page
        page = max(1, request.args.get("page", 1, type=int) or 1)
        messages = reading.list_folder(session, account.id, current.id, limit=PAGE_SIZE + 1,
                                       offset=(page - 1) * PAGE_SIZE)
        pane = side_pane()
        args = {"account_id": account.id}
        if current.role != "inbox":
            args["folder_id"] = current.id
        return render_template(
            "mailbox.html", pane=pane, account=account, folder=current,
            current_folder=current, folders=_folders_of(pane, account.id),
            messages=messages[:PAGE_SIZE], page=page, has_more=len(messages) > PAGE_SIZE,
            list_endpoint="mailbox" if current.role == "inbox" else "folder", list_args=args)

    def owned_message(account_id: int, message_id: int) -> Any:
        session = db_session()
        account = account_svc.get_owned_account(session, owner(), account_id)
        meta = reading.get_message(session, account.id, message_id)
        if meta is None:
            abort(404)
        return account, meta

    @app.route("/mail/<int:account_id>/<int:message_id>")
    @login_required
    def message(account_id: int, message_id: int) -> Any:
        account, meta = owned_message(account_id, message_id)
        session = db_session()
        current = reading.folder(session, account.id, meta.folder_id)
        if current is None:  # (a message is always in one of its account's folders)
            abort(404)
        readable = reading.open_message(session, meta)  # opening marks it read
        pane = side_pane()
        return render_template(
            "message.html", pane=pane, account=account, meta=meta, msg=readable,
            folder=current, current_folder=current, folders=_folders_of(pane, account.id),
            folder_url=folder_url(current), frame_sandbox=FRAME_SANDBOX)

    @app.route("/mail/<int:account_id>/<int:message_id>/body")
    @login_required
    def message_body(account_id: int, message_id: int) -> Any:
        """The sanitised HTML body alone, for the message page's sandboxed frame."""
        _account, meta = owned_message(account_id, message_id)
        readable = reading.read_message(db_session(), meta.id)
        return message_body_response(reading.body_document(readable.html or ""))

    @app.route("/mail/<int:account_id>/<int:message_id>/part/<part_id>")
    @login_required
    def message_part(account_id: int, message_id: int, part_id: str) -> Any:
        """One attachment (or a part nested too deep to show, as .eml), downloaded."""
        _account, meta = owned_message(account_id, message_id)
        part = reading.read_part(db_session(), meta.id, part_id)
        if part is None:
            abort(404)
        return download_response(part.filename, part.data)

    @app.route("/mail/<int:account_id>/<int:message_id>/original")
    @login_required
    def message_original(account_id: int, message_id: int) -> Any:
        """The message exactly as it was fetched (.eml)."""
        _account, meta = owned_message(account_id, message_id)
        return download_response(f"message-{meta.id}.eml",
                                 reading.read_original(db_session(), meta.id))

    @app.route("/mail/<int:account_id>/actions", methods=["POST"])
    @login_required
    def message_actions(account_id: int) -> Any:
        return _act(app, account_id)


def _folders_of(pane: list[dict[str, Any]], account_id: int) -> list[reading.FolderItem]:
    return next((item["folders"] for item in pane if item["account"].id == account_id), [])


def _act(app: Flask, account_id: int) -> Any:
    """One of the message actions on the posted messages (all the account's, else 404)."""
    session = db_session()
    account = account_svc.get_owned_account(session, owner(), account_id)
    action = request.form.get("action", "")
    if action not in ACTIONS:
        abort(400)
    try:
        ids = {int(v) for v in request.form.getlist("message_id")}
    except ValueError:
        abort(400)
    back = _local_next(url_for("mailbox", account_id=account.id))
    if not ids:
        flash(gettext("Select one or more messages first."))
        return redirect(back)
    if len(reading.messages(session, account.id, ids)) != len(ids):
        abort(404)  # another account's (or another user's) message, or none at all
    if action in ("read", "unread"):
        n = reading.mark(session, account.id, ids, read=action == "read")
        flash(ngettext("%(num)s message marked read.", "%(num)s messages marked read.", n)
              if action == "read" else
              ngettext("%(num)s message marked unread.", "%(num)s messages marked unread.", n))
    elif action == "move":
        target = reading.folder(session, account.id, request.form.get("folder_id", type=int)
                                or -1)
        if target is None:
            abort(404)
        n = reading.move(session, account.id, ids, target.id)
        flash(ngettext("%(num)s message moved to %(folder)s.",
                       "%(num)s messages moved to %(folder)s.", n,
                       folder=isolate(folder_text(target))))
    else:
        doomed = reading.in_trash(session, account.id, ids)
        if doomed and request.form.get("confirm") != "1":
            pane = side_pane()
            current = reading.folder(session, account.id, doomed[0].folder_id)
            return render_template("confirm_delete.html", pane=pane, account=account,
                                   current_folder=current, doomed=doomed, next_url=back)
        done = reading.delete_messages(app, session, account, ids)
        if done.trashed:
            flash(ngettext("%(num)s message moved to Trash.",
                           "%(num)s messages moved to Trash.", done.trashed))
        if done.deleted:
            flash(ngettext("%(num)s message deleted for good.",
                           "%(num)s messages deleted for good.", done.deleted))
    return redirect(back)

