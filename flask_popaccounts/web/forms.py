"""Flask-WTF forms for the Mail Accounts pages.

Every form is a :class:`FlaskForm`, so every one (the small button forms included)
carries a CSRF token. The validators here refuse what must never reach a protocol
line or a header: CR, LF and other control characters in any field (the engine's one
rule, :func:`~flask_popaccounts.engine.safety.has_control_chars`), host names that are
not host names, ports outside ``POPACCOUNTS_ALLOWED_POP3_PORTS`` /
``POPACCOUNTS_ALLOWED_SMTP_PORTS``. The fields that several forms share (an address,
the delete policy) are made by one function each.

Hosts can subclass these forms; the views look them up through
:data:`FORMS` so a host may swap one in (``FORMS["account"] = MyForm``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Any

from babel.lists import format_list
from email_validator import EmailNotValidError, validate_email
from flask import current_app
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    Field,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
    SubmitField,
)
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    Optional,
    StopValidation,
    ValidationError,
)

from .. import i18n
from ..config import PORTS_KEYS, trusted_servers
from ..engine.safety import has_control_chars
from ..engine.types import DeletePolicy, Security
from ..i18n import N_, isolate, lazy_gettext, lazy_ngettext
from ..i18n import gettext as _

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")

try:  # WTForms >= 3.3 prefers SelectChoice objects over (value, label) tuples
    from wtforms.fields.choices import SelectChoice
except ImportError:  # pragma: no cover - older WTForms
    SelectChoice = None


def _choices(pairs: list[tuple[str, str]]) -> list[Any]:
    if SelectChoice is None:  # pragma: no cover
        return pairs
    return [SelectChoice(value, label) for value, label in pairs]


#: Check intervals offered to the user, in minutes (the seed product's 3..60 range).
INTERVAL_CHOICES = [3, 5, 10, 15, 30, 60]


def no_control_chars(form: Any, field: Field) -> None:
    """Refuse CR, LF and every other control character (header/protocol injection)."""
    value = field.data
    if isinstance(value, str) and has_control_chars(value):
        raise ValidationError(_("Line breaks and control characters are not allowed here."))


#: email-validator's most common reasons, translated (the others are shown in English to
#: English readers, and as a general reason to the others).
_EMAIL_REASONS = frozenset({
    N_("An email address must have an @-sign."),
    N_("There must be something before the @-sign."),
    N_("There must be something after the @-sign."),
    N_("The part after the @-sign is not valid. It should have a period."),
    N_("The part after the @-sign is not valid. It is not within a valid top-level domain."),
    N_("An email address cannot have two periods in a row."),
    N_("An email address cannot start with a period."),
    N_("An email address cannot have a period immediately before the @-sign."),
    N_("The email address contains invalid characters before the @-sign."),
    N_("The part after the @-sign contains invalid characters."),
    N_("The part after the @-sign is a special-use or reserved name that cannot be used "
       "with email."),
    N_("There can't be anything after the email address."),
})


def _email_reason(reason: str) -> str:
    """email-validator's reason in the reader's language ("...: SPACE." loses its list
    of characters when translated)."""
    if reason in _EMAIL_REASONS:
        return _(reason)
    known = reason.split(":")[0] + "."
    if known in _EMAIL_REASONS and _(known) != known:
        return _(known)
    if i18n.current_locale().language == i18n.SOURCE_LOCALE:
        return reason
    return _("It contains characters or parts that an email address cannot have.")


def email_address(form: Any, field: Field) -> None:
    """A syntactically valid address (email-validator; no DNS look-up)."""
    value = (field.data or "").strip()
    if not value:
        return
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationError(_("This is not a valid email address: %(reason)s",
                                reason=_email_reason(str(exc)))) from None
    field.data = result.normalized


def _bad_host(field: Field) -> str:
    example = "smtp.example.com" if "smtp" in (field.name or "") else "pop.example.com"
    return _("This is not a valid server name. Use the host name your provider gives, "
             "for example %(example)s.", example=isolate(example))


def host_name(form: Any, field: Field) -> None:
    """A DNS host name (IDN allowed, stored as ASCII) or an IP address literal."""
    value = (field.data or "").strip().rstrip(".")
    if not value:
        return
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        field.data = value
        return
    try:
        ascii_host = value.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationError(_bad_host(field)) from None
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValidationError(_bad_host(field))
    field.data = ascii_host.lower()


def listed(items: Iterable[object], *, isolated: bool = True) -> str:
    """``a, b and c`` in the reader's language, each item isolated (data in a sentence;
    ``isolated=False`` for plain numbers, which keep their order in any direction)."""
    return format_list([isolate(item) if isolated else str(item) for item in items],
                       locale=i18n.current_locale())


def allowed_port(kind: str, message: str) -> Callable[[Any, Field], None]:
    """A validator: the port must be one the host allows for ``kind`` ("pop3", "smtp";
    R23). ``message`` (marked with ``N_``, translated when shown) names the allowed
    ports through ``%(listed)s``.

    A port of one of the host's trusted servers (``POPACCOUNTS_TRUSTED_SERVERS``) passes
    here too; the connection then allows it for that server's address only."""

    def validate(form: Any, field: Field) -> None:
        if field.data is None:
            return
        allowed = sorted(int(p) for p in current_app.config[PORTS_KEYS[kind]])
        trusted = {port for _host, port in trusted_servers(
            current_app.config.get("POPACCOUNTS_TRUSTED_SERVERS"))}
        if int(field.data) not in allowed and int(field.data) not in trusted:
            raise ValidationError(_(message, listed=listed(allowed, isolated=False)))

    return validate


#: 110 and 995 unless the host allows more.
allowed_pop3_port = allowed_port(
    "pop3", N_("Only the standard POP3 ports are allowed: %(listed)s. If your provider uses "
               "another port, ask them for the standard one."))
#: 465 and 587 (25 only when the host application allows it).
allowed_smtp_port = allowed_port(
    "smtp", N_("Only the standard SMTP submission ports are allowed: %(listed)s."))


def address_field(label: str, description: str | None = None, *,
                  required: bool = False) -> Any:
    """An email address field: one line, a valid address (normalised), no control chars."""
    return StringField(label, description=description, validators=[
        DataRequired() if required else Optional(), Length(max=320), no_control_chars,
        email_address])


def delete_policy_field() -> Any:
    """What happens to mail on the server once it is fetched (R5)."""
    return RadioField(
        lazy_gettext("Delete emails from the server"),
        choices=_choices([
            (DeletePolicy.KEEP.value, lazy_gettext("Keep a copy on the server")),
            (DeletePolicy.DELETE.value, lazy_gettext("Delete from the server once stored here")),
            (DeletePolicy.AFTER_DAYS.value, lazy_gettext("Delete from the server after some days")),
        ]),
        default=DeletePolicy.KEEP.value,
    )


def _days_when_needed(form: Any, field: Field) -> None:
    """Days matter only with "delete after N days"; otherwise ignore the field."""
    if form.delete_policy.data != DeletePolicy.AFTER_DAYS.value:
        field.errors[:] = []
        raise StopValidation()
    if field.data is None or not 1 <= int(field.data) <= 3650:
        field.errors[:] = []
        raise StopValidation(_("Enter a number of days between 1 and 3650."))


def _folder_id(value: Any) -> int | None:
    """The folder select's value: a folder id, or None (nothing chosen, or not a number)."""
    text = str(value if value is not None else "").strip()
    return int(text) if text.isdigit() else None


def _folder_when_needed(form: Any, field: Field) -> None:
    """The folder matters only with "an existing folder" (whose it is: services.retrieval)."""
    field.errors[:] = []
    if form.deliver_to.data != "folder":
        raise StopValidation()
    if field.data is None:
        raise StopValidation(_("Choose the folder new mail goes to."))


class RetrievalFields:
    """Where fetched mail goes, "mark as read on arrival" and the first import (issue 13;
    :mod:`..services.retrieval`), besides the delete policy. The views offer "an existing
    folder" only on accounts that have folders, and the first import only while the
    account has never fetched (:mod:`.retrieval`)."""

    deliver_to = RadioField(
        lazy_gettext("Put new mail in"),
        choices=_choices([
            ("inbox", lazy_gettext("The Inbox")),
            ("account", lazy_gettext("A folder named after the account (created if missing)")),
            ("folder", lazy_gettext("A folder of this account")),
        ]),
        default="inbox",
    )
    deliver_folder = SelectField(lazy_gettext("Folder"), choices=[], coerce=_folder_id,
                                 validate_choice=False, validators=[_folder_when_needed])
    mark_read = BooleanField(lazy_gettext("Mark as read on arrival"),
                             description=lazy_gettext("Otherwise new mail arrives unread."))
    first_import = RadioField(
        lazy_gettext("First import"),
        choices=_choices([
            ("all", lazy_gettext("All mail on the server")),
            ("new", lazy_gettext("Only mail that arrives from now on")),
        ]),
        default="all",
    )


class AccountForm(FlaskForm, RetrievalFields):
    """The add/edit form: identity, incoming server, retrieval settings."""

    email = address_field(lazy_gettext("Email address"), required=True)
    name = StringField(
        lazy_gettext("Account name"),
        description=lazy_gettext("Shown in the side pane, e.g. “Work” or “Old ISP mail”."),
        validators=[DataRequired(message=lazy_gettext("Give the account a name.")),
                    Length(max=200), no_control_chars],
    )
    send_from = address_field(lazy_gettext("Send mail as"),
                              lazy_gettext("The From address for mail sent from this account. "
                                           "Leave empty to use the email address."))
    reply_to = address_field(lazy_gettext("Reply-To address"),
                             lazy_gettext("Leave empty unless replies should go to another "
                                          "address."))
    is_default = BooleanField(lazy_gettext("Set this as the default account"))

    pop_host = StringField(
        lazy_gettext("Incoming (POP3) server"),
        validators=[DataRequired(message=lazy_gettext("Enter the incoming server name.")),
                    Length(max=253), no_control_chars, host_name],
    )
    pop_port = IntegerField(
        lazy_gettext("Port"),
        validators=[InputRequired(message=lazy_gettext("Enter the port number.")),
                    allowed_pop3_port]
    )
    pop_security = SelectField(lazy_gettext("Security"), choices=[])
    pop_username = StringField(
        lazy_gettext("Username"),
        description=lazy_gettext("Some providers want the full email address, others "
                                 "domain\\username."),
        validators=[DataRequired(message=lazy_gettext("Enter the username.")),
                    Length(max=320), no_control_chars],
    )
    password = PasswordField(
        lazy_gettext("Password"),
        validators=[Length(max=1024), no_control_chars],
    )
    delete_policy = delete_policy_field()
    delete_after_days = IntegerField(lazy_gettext("Days to keep on the server"), default=7,
                                     validators=[_days_when_needed])
    fetch_interval_minutes = SelectField(
        lazy_gettext("Check for new mail every"),
        choices=_choices([(str(m), lazy_ngettext("%(num)s minute", "%(num)s minutes", m))
                          for m in INTERVAL_CHOICES]),
        default="5",
    )
    submit = SubmitField(lazy_gettext("Test and save"))

    def __init__(self, *args: Any, password_required: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.password_required = password_required
        choices = [
            (Security.SSL.value, _("SSL (port %(port)s)", port=995)),
            (Security.STARTTLS.value, _("STARTTLS (port %(port)s)", port=110)),
        ]
        if current_app.config.get("POPACCOUNTS_ALLOW_PLAINTEXT"):
            choices.append((Security.PLAIN.value, _("Plain, no encryption (not recommended)")))
        self.pop_security.choices = _choices(choices)
        if not self.is_submitted() and not self.pop_security.data:
            self.pop_security.data = Security.SSL.value
        interval = str(current_app.config.get("POPACCOUNTS_DEFAULT_INTERVAL_MINUTES", 5))
        if not self.is_submitted() and self.fetch_interval_minutes.data in (None, "None"):
            self.fetch_interval_minutes.data = interval

    def validate_password(self, field: Field) -> None:
        if self.password_required and not field.data:
            raise ValidationError(_("Enter the password (or app password) for this mailbox."))


class ConfirmForm(FlaskForm):
    """A button that changes something (delete, enable, default, check now): CSRF only."""

    submit = SubmitField(lazy_gettext("Confirm"))


#: The form classes the views use; a host may replace any of them before the first request.
FORMS: dict[str, type[FlaskForm]] = {"account": AccountForm, "confirm": ConfirmForm}
