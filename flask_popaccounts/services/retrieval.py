"""An account's retrieval settings (issue 13, Zoho's "POP retrieval settings"): where
fetched mail goes, "mark as read on arrival", and the first import.

- Where mail goes: the Inbox (default), a folder named after the account (created when
  missing), or an existing folder of the account (:mod:`..storage.retrieval`). Filters
  run first: a filter's move wins; this replaces only the default Inbox placement.
- "Mark as read on arrival" applies to every message the fetch stores (R18: unread by
  default), filtered or not.
- First import: all mail on the server (default), or only mail that arrives from now
  on. POP cannot select by date (R17), so "from now on" makes the next fetch record the
  UIDLs listed as seen without downloading them (:mod:`..engine.firstimport`); they are
  never deleted from the server by the delete policy (they were never stored here). It
  can only be chosen while the account has never fetched: afterwards it would change
  nothing already fetched (:func:`first_import_open`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.orm import Session
from werkzeug.exceptions import NotFound

from ..storage import retrieval as store
from ..storage.models import Account, Folder, value_of
from . import scheduling

if TYPE_CHECKING:
    from .account_input import AccountInput, OAuthAccountInput

#: the first import's choices
ALL_MAIL, ONLY_NEW = "all", "new"


def first_import_open(session: Session, account: Account | None) -> bool:
    """Whether the first import may still be chosen: a new account, or one that has
    never fetched (no success, nothing in its ledger) and is not being fetched now."""
    if account is None or account.id is None:
        return True
    return (account.last_success_at is None and not account.fetched_total
            and not store.has_ledger(session, account.id)
            and not scheduling.lease_is_live(session, account.id))


def check_choice(session: Session, account: Account | None, data: AccountInput | OAuthAccountInput
                 ) -> int | None:
    """The folder chosen for new mail (None: not "an existing folder").

    A folder that is not one of this account's receiving folders is a 404, like any id
    of another user's (a new account has no folder of its own to choose yet).
    """
    if data.deliver_to != store.FOLDER:
        return None
    folder = None if account is None or account.id is None else store.receiving_folder(
        session, account.id, data.deliver_folder_id)
    if folder is None:
        raise NotFound()
    return int(folder.id)


def apply_settings(session: Session, account: Account, data: AccountInput | OAuthAccountInput, *,
                   new: bool) -> None:
    """Copy the retrieval choices onto the row (no commit); :func:`check_choice` first.

    The first import changes only while :func:`first_import_open`.
    """
    choice = data.deliver_to if data.deliver_to in store.DESTINATIONS else store.INBOX
    folder_id = check_choice(session, None if new else account, data)
    if new or first_import_open(session, account):
        account.import_only_new = data.first_import == ONLY_NEW
    account.deliver_to = choice
    account.deliver_folder_id = folder_id
    account.mark_read = bool(data.mark_read)


def prepare_folder(session: Session, account: Account) -> None:
    """The folder named after the account, made now (so the side pane shows it before any
    mail arrives) when that is where mail goes; flushes."""
    if value_of(account.deliver_to) == store.ACCOUNT_FOLDER:
        store.account_folder(session, account)


def destination_for(session: Session, account: Account) -> int:
    """The folder a fetch files unfiltered mail into (the account's folder is created
    when missing); commits."""
    folder_id = store.destination_folder(session, account)
    session.commit()
    return folder_id


def choosable_folders(session: Session, account: Account | None) -> list[Folder]:
    """The account's own folders "an existing folder" offers (none for a new account)."""
    if account is None or account.id is None:
        return []
    return store.choosable_folders(session, account.id)


def seen_at_first_import(session: Session, account: Account) -> int:
    """UIDLs the first import "from now on" left on the server (for the edit page)."""
    return store.seen_count(session, account.id)
