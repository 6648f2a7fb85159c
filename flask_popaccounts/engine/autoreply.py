"""Vacation (out-of-office) replies: the RFC 3834 decision and the reply itself (pure).

:func:`should_reply` says whether a message may get an automatic reply and, when not,
why (a short reason code, for logs and tests). It replies only when all hold:

- the message is addressed to the account: one of its addresses is in To or Cc
  (RFC 3834 3.1.1: not to mail that reached us as Bcc or through a list);
- ``Auto-Submitted`` is absent or exactly ``no`` (3.1.3);
- no ``Precedence: bulk / list / junk`` and no ``List-*`` header (3.1.2 / RFC 2369);
- the sender (Return-Path when present, else From) is a real person's address: not
  empty (a bounce), not ``MAILER-DAEMON``, ``postmaster`` or a no-reply-ish mailbox,
  and not the account's own address (no loops with ourselves).

The "once per sender per N days" rule needs memory, so it lives in the services;
:func:`reply_to_address` gives the normalised key they remember the sender by.

**Old mail never triggers anything** (vacation replies and filter forwards alike): a
first sync or a re-import brings years of mail, and none of it may be answered or
forwarded. :func:`arrival_time` says when a message arrived: the newest timestamp of
its ``Received:`` fields (written by the receiving servers, so the best witness),
else its ``Date:`` (the sender's clock), else the time we fetched it.
:func:`arrived_since` compares that with when the rule or reply was switched on, to
the second (header dates have no fractions): mail that arrived in or after that
second triggers it, earlier mail never does.

**Forwards carry a loop marker**, :data:`LOOP_HEADER`; a message that carries it (one
of our own forwards, come back through another account or a second site running
this extension) is never forwarded again.

:func:`build_reply` makes the reply: ``Auto-Submitted: auto-replied``, ``In-Reply-To``
/ ``References`` to the original, a "Re:" subject, sent to the sender; the caller sends
it with a null envelope sender (``MAIL FROM:<>``) so nothing ever answers it (3.3).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from .message import build_message
from .texts import N_

_NOREPLY = re.compile(
    r"^(mailer-daemon|postmaster|no[-_.]?reply|do[-_.]?not[-_.]?reply|bounces?|"
    r"notifications?|listserv|majordomo|owner-.*|.*-request|.*-bounces?|.*-owner|"
    r"root|daemon|nobody)(\+.*)?$", re.IGNORECASE)
_BULK = {"bulk", "list", "junk"}


#: Added to every forward we send; mail carrying it is never forwarded again.
LOOP_HEADER = "X-PopAccounts-Forwarded"


def _when(value: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when


def arrival_time(headers: Mapping[str, Sequence[str]], fetched_at: datetime) -> datetime:
    """When the message arrived: the topmost ``Received:`` field's timestamp, else
    ``Date:``, else ``fetched_at`` (``headers``: lower-case name -> values, in order).

    The topmost one was written by the last server, the user's own provider; a sender
    can add Received fields of their own with any time, but only below it.
    """
    for value in headers.get("received", []):
        when = _when(value.rpartition(";")[2]) if ";" in value else None
        if when is not None:
            return when
    dates = [w for w in (_when(v) for v in headers.get("date", [])) if w is not None]
    return dates[0] if dates else fetched_at


def arrived_since(arrival: datetime, switched_on: datetime | None,
                  not_before: datetime | None = None) -> bool:
    """Whether mail that arrived at ``arrival`` may trigger a rule switched on at
    ``switched_on`` (never when None) and, for a vacation, not before ``not_before``."""
    if switched_on is None:
        return False
    start = max(switched_on, not_before) if not_before is not None else switched_on
    return arrival >= start.replace(microsecond=0)


def is_our_forward(headers: Mapping[str, Sequence[str]]) -> bool:
    """The message carries our loop marker in its header (it is one of our forwards)."""
    return LOOP_HEADER.lower() in headers


@dataclass(frozen=True)
class ReplyDecision:
    reply: bool
    reason: str  #: "ok" or why not
    sender: str = ""  #: the address to answer (lower-case), when reply is True


def _addresses(values: Iterable[str]) -> list[str]:
    return [addr.strip().lower() for _name, addr in getaddresses(list(values)) if addr.strip()]


def reply_to_address(headers: Mapping[str, Sequence[str]]) -> str:
    """The address an automatic reply goes to: Return-Path if present, else From."""
    rp = headers.get("return-path", [])
    if rp:
        return parseaddr(rp[0])[1].strip().lower()
    froms = _addresses(headers.get("from", []))
    return froms[0] if froms else ""


def should_reply(headers: Mapping[str, Sequence[str]], own_addresses: Iterable[str]
                 ) -> ReplyDecision:
    """RFC 3834's rules for one incoming message (``headers``: lower-case name -> values)."""
    own = {a.strip().lower() for a in own_addresses if a.strip()}
    auto = [v.strip().lower() for v in headers.get("auto-submitted", [])]
    if any(v.split(";")[0].strip() != "no" for v in auto):
        return ReplyDecision(False, "auto_submitted")
    prec = [v.strip().lower() for v in headers.get("precedence", [])]
    if any(p in _BULK for p in prec):
        return ReplyDecision(False, "precedence")
    if any(name.startswith("list-") for name in headers):
        return ReplyDecision(False, "list")
    if any(name in ("x-autoreply", "x-autorespond", "x-auto-response-suppress")
           for name in headers):
        return ReplyDecision(False, "auto_submitted")
    recipients = set(_addresses([*headers.get("to", []), *headers.get("cc", [])]))
    if not recipients & own:
        return ReplyDecision(False, "not_addressed")
    sender = reply_to_address(headers)
    if not sender or "@" not in sender:
        return ReplyDecision(False, "null_sender")
    local = sender.rsplit("@", 1)[0]
    if _NOREPLY.match(local):
        return ReplyDecision(False, "noreply_sender")
    if sender in own:
        return ReplyDecision(False, "own_address")
    return ReplyDecision(True, "ok", sender)


#: The reply's subject when neither the user nor the original gave one: a msgid, which
#: the services translate for the account's owner (``no_subject=``). The "Re:" prefix
#: stays as it is in every language: mail clients thread replies by it.
NO_SUBJECT_REPLY = N_("Re: your message")


def reply_subject(subject: str, template: str, no_subject: str = NO_SUBJECT_REPLY) -> str:
    """The reply's subject: the user's own, else "Re: <original>" (one "Re:" only)."""
    if template.strip():
        return " ".join(template.split())
    base = " ".join(subject.split())
    if re.match(r"^re:\s", base, re.IGNORECASE):
        return base[:900]
    return f"Re: {base}"[:900] if base else no_subject


def build_reply(*, from_: Address, to: str, original_subject: str, original_message_id: str,
                original_references: str, subject: str, body: str,
                date: datetime | None = None, no_subject: str = NO_SUBJECT_REPLY
                ) -> EmailMessage:
    """The automatic reply (RFC 3834 section 3.1.7, 3.2, 5); ``no_subject``: the subject
    when neither the user's nor the original's is there (translated by the caller)."""
    msg_id = original_message_id.strip()
    refs = " ".join(x for x in (original_references.strip(), msg_id) if x)
    msg = build_message(
        from_=from_, to=[Address(addr_spec=to)],
        subject=reply_subject(original_subject, subject, no_subject), body=body,
        in_reply_to=msg_id or None, references=refs[:2000] or None, date=date,
    )
    msg["Auto-Submitted"] = "auto-replied"
    msg["Precedence"] = "bulk"  # (not in RFC 3834, but many old auto-responders honour it)
    msg["X-Auto-Response-Suppress"] = "All"  # Exchange's equivalent
    return msg
