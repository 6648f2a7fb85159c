"""What the account forms collect, and the checks on it before anything is saved.

:class:`AccountInput` / :class:`OAuthAccountInput`; :func:`check_input` (control
characters in protocol lines and, decoded, in header values); the refusals that belong
to one form field (:class:`FieldError`: an address that is an account already, a stored
password that would go to a new server); whether an edit moves the server. Used by
:mod:`.accounts`, which creates and updates the rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..engine import safety
from ..engine.errors import InvalidInput
from ..engine.types import DeletePolicy, Security
from ..i18n import N_, isolate
from ..i18n import gettext as _
from ..storage.models import Account, value_of

if TYPE_CHECKING:
    from flask import Flask


class FieldError(InvalidInput):
    """A refusal that belongs to one field of the account form (``field``)."""

    field: str = ""

    def __init__(self, message: str | None = None, *, field: str, detail: str | None = None
                 ) -> None:
        super().__init__(message, detail=detail)
        self.field = field


class PasswordNeededForNewServer(FieldError):
    code = "password_for_new_server"
    title = N_("Enter the password again")
    help = N_(
        "You changed the server, port or username. The stored password is only ever sent "
        "to the server it was entered for, so type it again to test and save."
    )


class ServerFixedByProvider(FieldError):
    code = "server_fixed_by_provider"
    title = N_("This account's server is set by its provider")
    help = N_(
        "The account signs in with its provider, and its sign-in is only sent to that "
        "provider's server. Add a new account to use another server."
    )


class AddressInUse(FieldError):
    code = "address_in_use"
    title = N_("You already have an account with this address")
    help = N_("Edit the existing account instead, or delete it first.")


@dataclass
class AccountInput:
    """What the add/edit form collects (already validated for format by the form)."""

    email: str
    name: str
    send_from: str
    reply_to: str
    is_default: bool
    provider: str
    pop_host: str
    pop_port: int
    pop_security: Security
    pop_username: str
    password: str | None  #: None keeps the stored secret (edit without a new password)
    delete_policy: DeletePolicy = DeletePolicy.KEEP
    delete_after_days: int = 0
    fetch_interval_minutes: int = 5
    #: retrieval settings (:mod:`.retrieval`): "inbox" | "account" | "folder" (+ its id)
    deliver_to: str = "inbox"
    deliver_folder_id: int | None = None
    mark_read: bool = False
    first_import: str = "all"  #: "all" | "new" (only mail that arrives from now on)

    def __repr__(self) -> str:  # the password never reaches a log line
        return f"AccountInput(email={self.email!r}, pop_host={self.pop_host!r}, password=<hidden>)"


@dataclass
class OAuthAccountInput:
    """What the OAuth wizard collects besides the sign-in itself (R12)."""

    name: str = ""
    delete_policy: DeletePolicy = DeletePolicy.KEEP
    delete_after_days: int = 0
    is_default: bool = False
    #: retrieval settings, as in :class:`AccountInput` (no folder of its own to choose yet)
    deliver_to: str = "inbox"
    deliver_folder_id: int | None = None
    mark_read: bool = False
    first_import: str = "all"


def check_input(data: AccountInput) -> None:
    """Refuse CR/LF and control characters in anything that reaches a protocol line,
    and in what becomes a header (name, addresses) also once RFC 2047 words are decoded
    (an account name ``=?utf-8?q?A=0D=0ABcc:_x@evil.example?=`` would split every
    later From header)."""
    safety.check_fields(host=data.pop_host, username=data.pop_username,
                        provider=data.provider, password=data.password)
    for name, value in (("name", data.name), ("email", data.email),
                        ("send_from", data.send_from), ("reply_to", data.reply_to)):
        try:
            safety.check_header_fields(**{name: value})
        except InvalidInput as exc:
            raise FieldError(_("Line breaks and control characters are not allowed here "
                               "(also not as encoded words)."), field=name,
                             detail=exc.detail) from None
    host = data.pop_host.strip()
    if not host or " " in host:
        raise InvalidInput(_("The host name is empty or contains spaces."))


def clamp_interval(app: Flask, minutes: int) -> int:
    """The fetch interval within the allowed range (3-60 minutes, as the seed's product)."""
    lo = int(app.config.get("POPACCOUNTS_MIN_INTERVAL_MINUTES", 3))
    hi = int(app.config.get("POPACCOUNTS_MAX_INTERVAL_MINUTES", 60))
    return max(lo, min(hi, int(minutes)))


def existing_with_address(session: Session, owner_id: str, email: str,
                          exclude_id: int | None = None) -> Account | None:
    """The owner's account with this address (case-insensitive), other than ``exclude_id``."""
    stmt = select(Account).where(Account.owner_id == str(owner_id),
                                 func.lower(Account.email) == email.strip().lower())
    if exclude_id is not None:
        stmt = stmt.where(Account.id != exclude_id)
    return session.scalar(stmt.limit(1))


def check_address_free(session: Session, owner_id: str, email: str,
                       exclude_id: int | None = None) -> None:
    """Raise :class:`AddressInUse` (naming the existing account) when the owner already
    has an account with this address."""
    other = existing_with_address(session, owner_id, email, exclude_id)
    if other is not None:
        raise AddressInUse(_("You already have this address as the account “%(name)s” "
                             "(%(address)s).", name=isolate(other.name),
                             address=isolate(other.email)),
                           field="email", detail=f"account {other.id}")


@contextmanager
def _unique_address(session: Session, owner_id: str, email: str, exclude_id: int | None
                    ) -> Iterator[None]:
    """A concurrent save of the same address (the unique constraint, at flush or
    commit) becomes :class:`AddressInUse` instead of a 500."""
    try:
        yield
    except IntegrityError:
        session.rollback()
        check_address_free(session, owner_id, email, exclude_id)
        raise


def _destination_changed(account: Account, data: AccountInput) -> bool:
    """Where the stored secret would go (host, port, username) is not where it was
    entered for."""
    return (account.pop_host.lower() != data.pop_host.strip().lower()
            or int(account.pop_port) != int(data.pop_port)
            or account.pop_username != data.pop_username)


def _server_changed(account: Account, data: AccountInput) -> bool:
    return (_destination_changed(account, data)
            or value_of(account.pop_security) != Security(data.pop_security).value)
