"""The pure retrieval engine: standard library only, no Flask, no SQLAlchemy.

Public entry points: :func:`fetch` (one exactly-once fetch session) and
:func:`check_login` (the add-account Test button). Storage plugs in through the
:class:`~.types.Ledger` and :class:`~.types.Sink` protocols; failures are the named
errors of :mod:`.errors`.

The modules, each with one job::

    net        safe connect: resolve once, public addresses only, TLS verified
    pop3       the POP3 command client     pop3wire  its lines, bodies and -ERR meanings
    sync       the exactly-once fetch      parse     metadata and header fields, never raising
    smtp       the SMTP protocol           message   outgoing MIME messages
    addresses  strict address parsing      safety    the one control-character rule
    filters    rule model, validation, evaluation       rulewords  their labels and summary
    mailview   a message as rules see it   patterns  the regular-expression guard
    autoreply  RFC 3834 vacation replies   clock     the one "now"
    sasl       PLAIN and XOAUTH2 messages  types     data types, Ledger and Sink protocols
    errors     every named failure         texts     N_ and Text: words to translate
    delivery   what deliveries to the host's platform share (ids, items, verdicts, errors)
    imapsearch the IMAP read-back, modified UTF-7 mailbox names
    lmtp       LMTP into the host's own mail server
"""

from __future__ import annotations

from . import delivery as delivery  # its named errors are found by code (account cards)
from .errors import ConnectionFailed, PopAccountsError, clean_detail, error_for_code
from .net import is_public_address, open_connection
from .parse import header_section, parse_meta, read_header_section
from .pop3 import POP3Client
from .sync import check_login, detect_uidl_reset, fetch
from .types import (
    AuthMethod,
    Credentials,
    DeletePolicy,
    FetchReport,
    Ledger,
    LedgerEntry,
    MessageMeta,
    NetPolicy,
    Progress,
    ProgressCallback,
    RetrievalPolicy,
    RetrievedMessage,
    Security,
    ServerSpec,
    Sink,
)

__all__ = [
    "AuthMethod",
    "ConnectionFailed",
    "Credentials",
    "DeletePolicy",
    "FetchReport",
    "Ledger",
    "LedgerEntry",
    "MessageMeta",
    "NetPolicy",
    "POP3Client",
    "PopAccountsError",
    "Progress",
    "ProgressCallback",
    "RetrievalPolicy",
    "RetrievedMessage",
    "Security",
    "ServerSpec",
    "Sink",
    "check_login",
    "clean_detail",
    "detect_uidl_reset",
    "error_for_code",
    "fetch",
    "header_section",
    "is_public_address",
    "open_connection",
    "parse_meta",
    "read_header_section",
]
