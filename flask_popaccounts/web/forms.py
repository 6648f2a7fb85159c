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
from collections.abc import Callable
from typing import Any

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

from ..config import PORTS_KEYS, trusted_servers
from ..engine.safety import has_control_chars
from ..engine.types import DeletePolicy, Security

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
        raise ValidationError("Line breaks and control characters are not allowed here.")


def email_address(form: Any, field: Field) -> None:
    """A syntactically valid address (email-validator; no DNS look-up)."""
    value = (field.data or "").strip()
    if not value:
        return
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationError(f"This is not a valid email address: {exc}") from None
    field.data = result.normalized


def _bad_host(field: Field) -> str:
    example = "smtp.example.com" if "smtp" in (field.name or "") else "pop.example.com"
    return ("This is not a valid server name. Use the host name your provider gives, "
            f"for example {example}.")


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


def allowed_port(kind: str, message: str) -> Callable[[Any, Field], None]:
    """A validator: the port must be one the host allows for ``kind`` ("pop3", "smtp";
    R23). ``message`` names the allowed ports through ``{listed}``.

    A port of one of the host's trusted servers (``POPACCOUNTS_TRUSTED_SERVERS``) passes
    here too; the connection then allows it for that server's address only."""

    def validate(form: Any, field: Field) -> None:
        if field.data is None:
            return
        allowed = sorted(int(p) for p in current_app.config[PORTS_KEYS[kind]])
        trusted = {p for _, p in trusted_servers(
            current_app.config.get("POPACCOUNTS_TRUSTED_SERVERS"))}
        if int(field.data) not in allowed and int(field.data) not in trusted:
            raise ValidationError(message.format(listed=" and ".join(map(str, allowed))))

    return validate


#: 110 and 995 unless the host allows more.
allowed_pop3_port = allowed_port(
    "pop3", "Only the standard POP3 ports are allowed: {listed}. If your provider uses "
    "another port, ask them for the standard one.")
#: 465 and 587 (25 only when the host application allows it).
allowed_smtp_port = allowed_port(
    "smtp", "Only the standard SMTP submission ports are allowed: {listed}.")


def address_field(label: str, description: str | None = None, *,
                  required: bool = False) -> Any:
    """An email address field: one line, a valid address (normalised), no control chars."""
    return StringField(label, description=description, validators=[
        DataRequired() if required else Optional(), Length(max=320), no_control_chars,
        email_address])


def delete_policy_field() -> Any:
    """What happens to mail on the server once it is fetched (R5)."""
    return RadioField(
        "Delete emails from the server",
        choices=_choices([
            (DeletePolicy.KEEP.value, "Keep a copy on the server"),
            (DeletePolicy.DELETE.value, "Delete from the server once stored here"),
            (DeletePolicy.AFTER_DAYS.value, "Delete from the server after some days"),
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
        raise StopValidation("Enter a number of days between 1 and 3650.")


class AccountForm(FlaskForm):
    """The add/edit form: identity, incoming server, retrieval settings."""

    email = address_field("Email address", required=True)
    name = StringField(
        "Account name",
        description="Shown in the side pane, e.g. “Work” or “Old ISP mail”.",
        validators=[DataRequired(), Length(max=200), no_control_chars],
    )
    send_from = address_field("Send mail as",
                              "The From address for mail sent from this account. "
                              "Leave empty to use the email address.")
    reply_to = address_field("Reply-To address",
                             "Leave empty unless replies should go to another address.")
    is_default = BooleanField("Set this as the default account")

    pop_host = StringField(
        "Incoming (POP3) server",
        validators=[DataRequired(), Length(max=253), no_control_chars, host_name],
    )
    pop_port = IntegerField(
        "Port", validators=[InputRequired(message="Enter the port number."), allowed_pop3_port]
    )
    pop_security = SelectField("Security", choices=[])
    pop_username = StringField(
        "Username",
        description="Some providers want the full email address, others domain\\username.",
        validators=[DataRequired(), Length(max=320), no_control_chars],
    )
    password = PasswordField(
        "Password",
        validators=[Length(max=1024), no_control_chars],
    )
    delete_policy = delete_policy_field()
    delete_after_days = IntegerField("Days to keep on the server", default=7,
                                     validators=[_days_when_needed])
    fetch_interval_minutes = SelectField(
        "Check for new mail every",
        choices=_choices([(str(m), f"{m} minutes") for m in INTERVAL_CHOICES]),
        default="5",
    )
    submit = SubmitField("Test and save")

    def __init__(self, *args: Any, password_required: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.password_required = password_required
        choices = [
            (Security.SSL.value, "SSL (port 995)"),
            (Security.STARTTLS.value, "STARTTLS (port 110)"),
        ]
        if current_app.config.get("POPACCOUNTS_ALLOW_PLAINTEXT"):
            choices.append((Security.PLAIN.value, "Plain, no encryption (not recommended)"))
        self.pop_security.choices = _choices(choices)
        if not self.is_submitted() and not self.pop_security.data:
            self.pop_security.data = Security.SSL.value
        interval = str(current_app.config.get("POPACCOUNTS_DEFAULT_INTERVAL_MINUTES", 5))
        if not self.is_submitted() and self.fetch_interval_minutes.data in (None, "None"):
            self.fetch_interval_minutes.data = interval

    def validate_password(self, field: Field) -> None:
        if self.password_required and not field.data:
            raise ValidationError("Enter the password (or app password) for this mailbox.")


class ConfirmForm(FlaskForm):
    """A button that changes something (delete, enable, default, check now): CSRF only."""

    submit = SubmitField("Confirm")


#: The form classes the views use; a host may replace any of them before the first request.
FORMS: dict[str, type[FlaskForm]] = {"account": AccountForm, "confirm": ConfirmForm}
