"""Per-account signatures and message templates (R1; issue 7 items 1 and 2).

Signatures
    Plain text and HTML (the HTML is sanitised with the same nh3 policy as mail we
    show, :func:`.reading.sanitize_html`), a placement and where it applies (new mail,
    replies, forwards). In a plain-text body the signature is one *block*: the
    conventional ``"-- "`` separator line and the text (RFC 3676 section 4.3), which is
    how compose finds it again to swap it when the From account changes, and how the
    server avoids adding it twice (:func:`swap_signature`).

    Placement ``"below"``: at the very end of the message (below any quoted or
    forwarded text). ``"above"``: right after what the user writes, above the quoted
    text. New mail has no quoted text, so both put it at the end.

Templates
    Named subject + body per account, ordered by ``position``. Placeholders are
    ``{recipient_name}``, ``{recipient_email}``, ``{date}``, ``{account_name}`` and
    ``{my_email}``, filled by :func:`render_placeholders`: a plain look-up of known
    names, never ``str.format`` (which would evaluate ``{0.__class__}``-style
    attribute paths); anything else in braces stays exactly as typed, and the editor
    lists it (:func:`unknown_placeholders`).
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from email.utils import getaddresses
from typing import TYPE_CHECKING

import nh3
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..i18n import lazy_gettext
from ..storage.models import Account, Signature, Template
from .reading import sanitize_html

if TYPE_CHECKING:
    from flask_babel import LazyString

#: The RFC 3676 signature separator line ("dash dash space").
SIG_SEPARATOR = "-- "

MODES = ("new", "reply", "forward")
PLACEMENTS = ("below", "above")

#: The placeholders a template may use, with what they mean (shown by the editor).
#: (lazy: each meaning is shown in the reader's language)
PLACEHOLDERS: dict[str, LazyString] = {
    "recipient_name": lazy_gettext("the first recipient's name (or their address when it has "
                                   "no name)"),
    "recipient_email": lazy_gettext("the first recipient's email address"),
    "date": lazy_gettext("today's date (YYYY-MM-DD)"),
    "account_name": lazy_gettext("the name of the account you send from"),
    "my_email": lazy_gettext("the address you send from"),
}

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ANY_BRACED = re.compile(r"\{([^{}\n]{0,60})\}")

MAX_SIGNATURE = 10_000
MAX_TEMPLATE_BODY = 100_000


# -- signatures ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureInput:
    text: str = ""
    html: str = ""
    placement: str = "below"
    on_new: bool = True
    on_reply: bool = True
    on_forward: bool = True


def get_signature(session: Session, account_id: int) -> Signature | None:
    """The account's signature row, if it has one."""
    return session.scalar(select(Signature).where(Signature.account_id == account_id))


def save_signature(session: Session, account: Account, data: SignatureInput) -> Signature:
    """Create or update the account's signature; the HTML is sanitised first; commits."""
    if data.placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}")
    sig = get_signature(session, account.id)
    if sig is None:
        sig = Signature(account_id=account.id)
        session.add(sig)
    sig.text = _normalise(data.text).strip("\n")[:MAX_SIGNATURE]
    sig.html = clean_signature_html(data.html)
    sig.placement = data.placement
    sig.on_new, sig.on_reply, sig.on_forward = data.on_new, data.on_reply, data.on_forward
    session.commit()
    return sig


def clean_signature_html(raw: str) -> str:
    """Signature HTML made safe (scripts, handlers, remote images removed)."""
    raw = (raw or "").strip()[:MAX_SIGNATURE]
    if not raw:
        return ""
    clean, _blocked = sanitize_html(raw)
    return clean.strip()


def signature_text(sig: Signature | None) -> str:
    """The plain-text signature: its text, or the HTML's text when only HTML was given."""
    if sig is None:
        return ""
    if sig.text.strip():
        return _normalise(sig.text).strip("\n")
    if sig.html.strip():
        with_breaks = re.sub(r"(?i)<br\s*/?>|</p>|</div>", "\n", sig.html)
        text = html_lib.unescape(nh3.clean(with_breaks, tags=set()))
        return "\n".join(line.strip() for line in text.splitlines()).strip("\n")
    return ""


def applies(sig: Signature | None, mode: str) -> bool:
    """Whether the signature is added to mail of this kind ("new", "reply", "forward")."""
    if sig is None or not signature_text(sig):
        return False
    return bool({"new": sig.on_new, "reply": sig.on_reply, "forward": sig.on_forward}.get(mode))


def signature_block(sig: Signature | None, mode: str) -> str:
    """The block that goes into a plain-text body for this kind of mail ("" for none)."""
    if not applies(sig, mode):
        return ""
    text = signature_text(sig)
    # A signature typed with its own separator line ("-- " or "--") gets it once.
    first, _, rest = text.partition("\n")
    if first.rstrip() == SIG_SEPARATOR.rstrip():
        text = rest.lstrip("\n")
    return f"{SIG_SEPARATOR}\n{text}"


def insert_block(body: str, block: str, placement: str, quote_start: int | None) -> str:
    """Put a signature block into ``body`` (LF line ends) at its placement."""
    if not block:
        return body
    if placement == "above" and quote_start is not None and 0 <= quote_start <= len(body):
        head = body[:quote_start].rstrip("\n")
        return f"{head}\n\n{block}\n\n{body[quote_start:].lstrip(chr(10))}"
    return f"{body.rstrip(chr(10))}\n\n{block}\n"


def remove_block(body: str, block: str) -> tuple[str, bool]:
    """Take the last copy of ``block`` out of ``body``; returns (body, found)."""
    if not block:
        return body, False
    i = body.rfind(block)
    if i < 0:
        return body, False
    head = body[:i].rstrip("\n")
    rest = body[i + len(block):].lstrip("\n")
    if rest:
        return f"{head}\n\n{rest}", True
    return (f"{head}\n" if head else ""), True


def swap_signature(body: str, *, old_block: str, new_block: str, placement: str,
                   quote_start: int | None) -> str:
    """The body with ``old_block`` (if still there) replaced by ``new_block``.

    Never adds a block that is already in the body: a form posted with the right
    signature in place (by the page or by our script) comes out unchanged.
    """
    body = _normalise(body)
    if old_block == new_block and (not new_block or new_block in body):
        return body
    body, _found = remove_block(body, old_block)
    if new_block and new_block in body:
        return body
    if quote_start is not None:
        quote_start = min(quote_start, len(body))
    return insert_block(body, new_block, placement, quote_start)


def html_body(body: str, block: str, sig_html: str) -> str:
    """An HTML alternative of a plain-text body whose signature block becomes ``sig_html``.

    The user's text is escaped (never interpreted); only the sanitised signature is
    HTML. Returns "" when the body does not contain the block.
    """
    body = _normalise(body)
    i = body.rfind(block) if block else -1
    if i < 0 or not sig_html:
        return ""

    def para(text: str) -> str:
        return html_lib.escape(text).replace("\n", "<br>\n")

    before, after = body[:i], body[i + len(block):]
    return ("<!DOCTYPE html><html><body>"
            f"<div>{para(before)}</div>"
            f'<div class="signature">-- <br>\n{sig_html}</div>'
            f"<div>{para(after)}</div></body></html>")


def _normalise(text: str) -> str:
    return (text or "").replace("\r\n", "\n").replace("\r", "\n")


# -- templates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateInput:
    name: str
    subject: str = ""
    body: str = ""


def list_templates(session: Session, account_id: int) -> list[Template]:
    """The account's templates in their order."""
    return list(session.scalars(select(Template).where(Template.account_id == account_id)
                                .order_by(Template.position, Template.id)))


def templates_by_account(session: Session, accounts: list[Account]) -> list[tuple[Account,
                                                                                 list[Template]]]:
    """Each account with its templates (for compose's template select)."""
    return [(a, list_templates(session, a.id)) for a in accounts]


def get_template(session: Session, account_id: int, template_id: int) -> Template | None:
    """One template, only if it belongs to that account."""
    return session.scalar(select(Template).where(Template.id == template_id,
                                                 Template.account_id == account_id))


def get_owned_template(session: Session, owner_id: str, template_id: int) -> Template | None:
    """A template of any of the owner's accounts, or None (also for others' ids)."""
    return session.scalar(
        select(Template).join(Account, Account.id == Template.account_id)
        .where(Template.id == template_id, Account.owner_id == str(owner_id)))


def create_template(session: Session, account: Account, data: TemplateInput) -> Template:
    """A new template, last in the list; commits."""
    last = session.scalar(select(func.max(Template.position))
                          .where(Template.account_id == account.id))
    row = Template(account_id=account.id, position=int(last or 0) + 1)
    _fill(row, data)
    session.add(row)
    session.commit()
    return row


def update_template(session: Session, row: Template, data: TemplateInput) -> Template:
    """Change a template's name, subject and body; commits."""
    _fill(row, data)
    session.commit()
    return row


def delete_template(session: Session, row: Template) -> None:
    """Delete a template; commits."""
    session.delete(row)
    session.commit()
    _renumber(session, row.account_id)


def move_template(session: Session, row: Template, direction: int) -> None:
    """Move a template one place up (-1) or down (+1) in its account's list; commits."""
    rows = list_templates(session, row.account_id)
    i = next(n for n, r in enumerate(rows) if r.id == row.id)
    j = i + (1 if direction > 0 else -1)
    if 0 <= j < len(rows):
        rows[i], rows[j] = rows[j], rows[i]
    for n, r in enumerate(rows, start=1):
        r.position = n
    session.commit()


def _renumber(session: Session, account_id: int) -> None:
    for n, r in enumerate(list_templates(session, account_id), start=1):
        r.position = n
    session.commit()


def _fill(row: Template, data: TemplateInput) -> None:
    row.name = data.name.strip()[:200]
    row.subject = data.subject.strip()
    row.body = _normalise(data.body)[:MAX_TEMPLATE_BODY]


def unknown_placeholders(*texts: str) -> list[str]:
    """Braced names in the texts that are not placeholders (the editor flags them)."""
    out: list[str] = []
    for text in texts:
        for m in _ANY_BRACED.finditer(text or ""):
            name = m.group(1)
            if name not in PLACEHOLDERS and m.group(0) not in out:
                out.append(m.group(0))
    return out


def placeholder_values(account: Account, to_field: str, today: date | None = None
                       ) -> dict[str, str]:
    """The values for a message from ``account`` to the addresses typed in To."""
    pairs = [(n, a) for n, a in getaddresses([to_field or ""]) if a]
    name, addr = pairs[0] if pairs else ("", "")
    return {
        "recipient_name": name or addr,
        "recipient_email": addr,
        "date": (today or date.today()).isoformat(),
        "account_name": account.name or account.email,
        "my_email": account.send_from or account.email,
    }


def render_placeholders(text: str, values: Mapping[str, str]) -> str:
    """Replace known ``{name}`` placeholders by plain look-up; everything else stays.

    Nothing is evaluated: ``{recipient_name.__class__}`` or ``{0}`` are left as typed.
    """
    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key in PLACEHOLDERS and key in values:
            return str(values[key])
        return m.group(0)

    return _PLACEHOLDER.sub(sub, text or "")


def apply_template(row: Template, account: Account, *, to: str, subject: str, body: str,
                   today: date | None = None) -> tuple[str, str]:
    """Compose's subject and body with the template inserted; returns (subject, body).

    The subject is the template's when none was typed yet; the template's text goes at
    the top of the body (above the signature and any quoted text).
    """
    values = placeholder_values(account, to, today)
    new_subject = subject if subject.strip() else render_placeholders(row.subject, values)
    text = render_placeholders(row.body, values).strip("\n")
    rest = _normalise(body)
    if rest.strip():
        return new_subject, f"{text}\n{rest if rest.startswith(chr(10)) else chr(10) + rest}"
    return new_subject, text + "\n"
