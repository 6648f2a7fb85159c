"""The retrieval settings on the account form (the wizard and the edit page): which
choices an account is offered, its values in and out (:mod:`..services.retrieval`).

- "An existing folder" is offered only on the edit page of an account with folders of
  its own; a folder id that is not one of them is a 404 (any other user's id is).
- The first import is offered in the wizard and on accounts that have never fetched;
  elsewhere the page says why not (it would change nothing already fetched).
"""

from __future__ import annotations

from typing import Any

from ..runtime import db_session


def setup(form: Any, account: Any | None) -> dict[str, Any]:
    """Fill the folder choices, drop what this account is not offered; the page's context."""
    from ..services import retrieval as svc

    session = db_session()
    folders = svc.choosable_folders(session, account)
    form.deliver_folder.choices = [(f.id, f.name) for f in folders]
    open_ = svc.first_import_open(session, account)
    if not open_:
        del form.first_import  # (a value posted anyway is ignored by the service too)
    return {"folder_choices": bool(folders), "first_import_open": open_,
            "seen_at_first_import": (svc.seen_at_first_import(session, account)
                                     if account is not None and not open_ else 0)}


def input_values(form: Any) -> dict[str, Any]:
    """The retrieval fields of ``AccountInput`` from a validated form."""
    first = getattr(form, "first_import", None)
    return {
        "deliver_to": form.deliver_to.data or "inbox",
        "deliver_folder_id": form.deliver_folder.data,
        "mark_read": bool(form.mark_read.data),
        "first_import": (first.data if first is not None else None) or "all",
    }


def initial_values(account: Any) -> dict[str, Any]:
    """The form's retrieval values from a stored account."""
    return {
        "deliver_to": getattr(account.deliver_to, "value", account.deliver_to) or "inbox",
        "deliver_folder": account.deliver_folder_id,
        "mark_read": bool(account.mark_read),
        "first_import": "new" if account.import_only_new else "all",
    }


def check(data: Any, account: Any | None) -> None:
    """A 404 for a folder that is not the account's, before any server is contacted."""
    from ..services import retrieval as svc

    svc.check_choice(db_session(), account, data)
