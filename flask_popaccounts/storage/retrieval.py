"""An account's retrieval settings as the store applies them (issue 13, "POP retrieval
settings"): where fetched mail goes, and the first import "from now on".

Where mail goes (``Account.deliver_to``):

- ``"inbox"`` (the default): the Inbox;
- ``"account"``: a folder named after the account (its name when the mail is fetched),
  created when missing; a name taken by the account's Sent or Trash means the Inbox;
- ``"folder"``: one of the account's own folders (``deliver_folder_id``, no foreign
  key: a folder since deleted, or of another account, means the Inbox).

This is only the default placement: the account's filters run first, and a filter's
move wins (:class:`~.mailstore.SqlSink` uses the folder given here only where the
classifier chose none). The first import "from now on" is recorded by
:func:`record_seen` (see :mod:`..engine.firstimport`).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.orm import Session

from .mailbox import ACCOUNTS, folder_id_for, table_of
from .models import Account, Folder, FolderRole, UidlEntry, value_of

INBOX, ACCOUNT_FOLDER, FOLDER = "inbox", "account", "folder"
DESTINATIONS = (INBOX, ACCOUNT_FOLDER, FOLDER)

_UIDL = table_of(UidlEntry)
#: roles a folder chosen for new mail may have (never Sent or Trash)
_RECEIVING = (FolderRole.INBOX.value, FolderRole.CUSTOM.value)


def choosable_folders(session: Session, account_id: int) -> list[Folder]:
    """The account's own folders (not Inbox, Sent, Trash) that new mail may go to."""
    return list(session.scalars(
        select(Folder).where(Folder.account_id == account_id,
                             Folder.role == FolderRole.CUSTOM.value)
        .order_by(func.lower(Folder.name), Folder.id)))


def receiving_folder(session: Session, account_id: int, folder_id: int | None
                     ) -> Folder | None:
    """The folder, only if it is this account's and may receive new mail."""
    if folder_id is None:
        return None
    return session.scalar(select(Folder).where(
        Folder.id == int(folder_id), Folder.account_id == account_id,
        Folder.role.in_(_RECEIVING)))


def account_folder(session: Session, account: Account) -> int:
    """The id of the folder named after the account, created when missing (flushes, does
    not commit); the Inbox when Sent or Trash has that name."""
    name = (account.name or account.email).strip()[:200]
    found = session.scalar(select(Folder).where(Folder.account_id == account.id,
                                                Folder.name == name))
    if found is not None:
        if value_of(found.role) in _RECEIVING:
            return int(found.id)
        return folder_id_for(session, account.id)
    folder = Folder(account_id=account.id, name=name, role=FolderRole.CUSTOM.value)
    session.add(folder)
    session.flush()
    return int(folder.id)


def destination_folder(session: Session, account: Account) -> int:
    """The folder fetched mail goes to when no filter moves it (may create the account's
    folder: flushes, does not commit)."""
    choice = value_of(account.deliver_to)
    if choice == ACCOUNT_FOLDER:
        return account_folder(session, account)
    if choice == FOLDER:
        folder = receiving_folder(session, account.id, account.deliver_folder_id)
        if folder is not None:
            return int(folder.id)
    return folder_id_for(session, account.id)


def has_ledger(session: Session, account_id: int) -> bool:
    """Whether any UIDL was ever recorded for the account (stored or seen)."""
    return bool(session.scalar(select(exists().where(_UIDL.c.account_id == account_id))))


def record_seen(session: Session, account_id: int, uidls: Collection[str],
                now: datetime) -> None:
    """The first import "from now on": these UIDLs seen, not stored, and the choice done,
    in one transaction; commits. (UIDLs already in the ledger are left as they are.)"""
    todo = set(uidls)
    if todo:
        known = set(session.scalars(select(_UIDL.c.uidl).where(
            _UIDL.c.account_id == account_id)))
        rows = [{"account_id": account_id, "uidl": u, "stored_at": now, "on_server": True,
                 "seen_only": True} for u in sorted(todo - known)]
        if rows:
            session.connection().execute(insert(_UIDL), rows)
    session.execute(update(ACCOUNTS).where(ACCOUNTS.c.id == account_id)
                    .values(import_only_new=False))
    session.commit()


def seen_count(session: Session, account_id: int) -> int:
    """How many UIDLs the first import "from now on" left on the server, unread here."""
    return int(session.scalar(select(func.count()).select_from(_UIDL).where(
        _UIDL.c.account_id == account_id, _UIDL.c.seen_only.is_(True))) or 0)
