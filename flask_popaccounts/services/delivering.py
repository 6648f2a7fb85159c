"""Where fetched mail goes: the host's ``delivery`` and ``scanners`` hooks at fetch time.

:mod:`.popsession` asks here for the fetch's sink. Without a ``delivery`` hook it is the
built-in store (``storage.mailstore.SqlSink``, as always), with the scanners' verdicts
through :class:`~..storage.deliveries.sql.ScanClassifier` when the host has scanners.
With one, it is a :class:`DeliverySink`: the engine's :class:`~..engine.types.Sink`
over the host's delivery (Maildir, LMTP, its own), the ledger still the SQL one.

What a :class:`DeliverySink` does with each message, in order:

1. the scanners: "reject" delivers nothing and stages the ledger row (seen) with a
   rejection record; "junk" goes to the Junk folder without the filters;
2. the account's filters choose the folder and the read/flagged state (forwards and
   the vacation reply are the platform's business with an external delivery: its Sieve
   sees the delivered mail, so they are not sent from here);
3. the delivery, under its contract (:mod:`..hooks`): an idempotent one just delivers;
   for any other the intent is committed first, and a message whose intent a crash
   left open is looked for (``find``) before it is delivered again;
4. the ledger row, committed with the next group (after ``flush()``), or with the
   next message's intent.

A delivered message cannot be taken back, so :meth:`DeliverySink.rollback` records what
was delivered rather than forget it (the engine still sends no DELE for it in this
session: the next one deletes it per the policy).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from ..config import net_policy
from ..engine.clock import Clock
from ..engine.delivery import (
    INBOX,
    JUNK,
    TRASH,
    DeliveryContext,
    DeliveryError,
    DeliveryItem,
    ScanResult,
    Verdict,
    delivery_id,
)
from ..engine.types import RetrievedMessage
from ..runtime import get_state
from ..storage.deliveries import records
from ..storage.deliveries.sql import ScanClassifier
from ..storage.mailbox import table_of
from ..storage.mailstore import Classifier
from ..storage.models import UidlEntry
from . import filtering

if TYPE_CHECKING:
    from flask import Flask

    from ..hooks import Delivery, DeliverySession, Hooks

log = logging.getLogger("flask_popaccounts.services.delivering")

_INSERT_UIDL = insert(table_of(UidlEntry))

#: a message -> (folder, seen, flagged), as the account's filters place it
Decide = Callable[[RetrievedMessage], "tuple[str, bool, bool]"]


def hooks_of(app: Flask) -> Hooks | None:
    """The app's hook registry (None: a host extension object without one)."""
    return get_state(app).hooks


def account_key(account_id: int, username: str, host: str) -> str:
    """What a delivery id is derived from: the account and the mailbox it fetches."""
    return f"{account_id}:{username}@{host.lower()}"


def classifier_for(app: Flask, session: Session, account_id: int, owner_id: str
                   ) -> Classifier | None:
    """The built-in store's classifier: the filters, behind the scanners if any."""
    state = get_state(app)
    inner = filtering.classifier_for(session, account_id, clock=state.clock)
    hooks = state.hooks
    if hooks is None or not hooks.scanners:
        return inner
    return ScanClassifier(account_id, _scan_fn(hooks, owner_id, account_id), inner,
                          clock=state.clock)


def _scan_fn(hooks: Hooks, owner_id: str, account_id: int
             ) -> Callable[[RetrievedMessage], ScanResult]:
    def scan(message: RetrievedMessage) -> ScanResult:
        return hooks.scan(message, owner_id=owner_id, account_id=account_id)
    return scan


def _decider(classifier: filtering.FilterClassifier | None) -> Decide:
    """The filters' folder and flags for an external delivery (no outbox side effects)."""
    if classifier is None:
        return lambda message: (INBOX, False, False)

    def decide(message: RetrievedMessage) -> tuple[str, bool, bool]:
        _view, decision = classifier.decide(message)
        folder = TRASH if decision.trash else (decision.folder or INBOX)
        return folder, decision.read, decision.flagged

    return decide


def external_sink(app: Flask, session: Session, account_id: int, *, owner_id: str,
                  username: str, host: str, on_commit: Callable[[list[str]], None] | None
                  ) -> DeliverySink | None:
    """The sink over the host's delivery hook, or None: the built-in store."""
    state = get_state(app)
    hooks = state.hooks
    if hooks is None or hooks.delivery is None:
        return None
    net = dataclasses.replace(net_policy(app.config), allow_private=True,
                              allowed_ports=frozenset(), allow_plaintext=False,
                              source_address=None, session_timeout=None)
    context = DeliveryContext(account_id=account_id, owner_id=str(owner_id), net=net)
    classifier = filtering.classifier_for(session, account_id, clock=state.clock)
    return DeliverySink(session, hooks.delivery, context,
                        key=account_key(account_id, username, host),
                        scan=_scan_fn(hooks, str(owner_id), account_id),
                        classifier=classifier, on_commit=on_commit, clock=state.clock)


class DeliverySink:
    """The engine's Sink over an external delivery (see the module docstring)."""

    def __init__(self, session: Session, delivery: Delivery, context: DeliveryContext, *,
                 key: str, scan: Callable[[RetrievedMessage], ScanResult],
                 classifier: filtering.FilterClassifier | None,
                 on_commit: Callable[[list[str]], None] | None, clock: Clock) -> None:
        self.session = session
        self.delivery = delivery
        self.context = context
        self.account_id = context.account_id
        self.key = key
        self.scan = scan
        self.classifier = classifier
        self.decide = _decider(classifier)
        self.on_commit = on_commit
        self.clock = clock
        self.target = str(getattr(delivery, "name", "host"))[:32]
        self.idempotent = bool(delivery.idempotent)
        #: UIDLs whose intent is open: a crash may have delivered them
        self._open = set() if self.idempotent else records.open_intents(session,
                                                                        self.account_id)
        self._session: DeliverySession | None = None
        self._ledger: list[dict[str, object]] = []
        self._records: list[dict[str, object]] = []
        self._closing: list[str] = []  #: intents to remove with the next write
        self._delivered: list[str] = []  #: delivery ids staged (for on_commit)
        self.found = 0  #: messages a read-back found delivered already (after a crash)
        self.repeated = 0  #: delivered again without a read-back: may be there twice
        self.rejected = 0

    def _item(self, message: RetrievedMessage, result: ScanResult) -> DeliveryItem:
        if result.verdict is Verdict.JUNK:
            folder, seen, flagged = JUNK, False, False
        else:
            folder, seen, flagged = self.decide(message)
        message.spool.seek(0)
        return DeliveryItem(
            account_id=self.account_id, owner_id=self.context.owner_id, uidl=message.uidl,
            delivery_id=delivery_id(self.key, message.uidl), size=message.size,
            spool=message.spool, meta=message.meta, folder=folder, seen=seen,
            flagged=flagged, junk=result.verdict is Verdict.JUNK,
            junk_reason=result.reason if result.verdict is Verdict.JUNK else "")

    def add(self, message: RetrievedMessage) -> None:
        """Scan, place, deliver one message; stage its ledger row."""
        result = self.scan(message)
        now = self.clock()
        if result.verdict is Verdict.REJECT:
            meta = message.meta
            self._records.append(records.row(
                self.account_id, message.uidl, records.REJECTED, target=self.target,
                reason=result.reason or "rejected", from_addr=meta.from_addr,
                subject=meta.subject, size=message.size, at=now))
            self.rejected += 1
        else:
            item = self._item(message, result)
            if self._session is None:
                self._session = self.delivery.open(self.context)
            if self.idempotent:
                self._session.deliver(item)  # a repeat is a no-op
                self._delivered.append(item.delivery_id)
            elif self._deliver_once(self._session, item, now):
                self._delivered.append(item.delivery_id)
            # (else a read-back found it: it arrived before the crash; recorded now)
        self._ledger.append(self._ledger_row(message.uidl, now))

    def _ledger_row(self, uidl: str, now: Any) -> dict[str, object]:
        return {"account_id": self.account_id, "uidl": uidl, "stored_at": now,
                "on_server": True}

    def _deliver_once(self, session: DeliverySession, item: DeliveryItem, now: Any) -> bool:
        """Intent, delivery, result; False when a read-back found it there already."""
        uidl = item.uidl
        if uidl in self._open:
            found = session.find(item)
            if found:
                self.found += 1
                self._closing.append(uidl)
                return False
            if found is None:
                self.repeated += 1
                log.warning("account %s: message %s may have been delivered before a "
                            "crash; delivered again (no read-back)", self.account_id, uidl)
        else:
            self._records.append(records.row(
                self.account_id, uidl, records.SENDING, target=self.target,
                delivery_id=item.delivery_id, size=item.size, at=now))
            self._open.add(uidl)
        self.commit()  # the intent is durable before the platform sees a byte
        try:
            session.deliver(item)
        except DeliveryError as exc:
            if not exc.maybe_delivered:  # it did not arrive: no intent left open
                self._closing.append(uidl)
                self._open.discard(uidl)
                self._write_quietly()
            raise
        self._closing.append(uidl)
        self._open.discard(uidl)
        return True

    def _write(self) -> None:
        """Ledger rows, records and closed intents, in one commit; then ``on_commit``."""
        if not (self._ledger or self._records or self._closing):
            return
        try:
            if self._ledger:
                self.session.connection().execute(_INSERT_UIDL, self._ledger)
            records.insert_rows(self.session, self._records)
            records.close_intents(self.session, self.account_id, self._closing)
            self.session.commit()
        except BaseException:
            self.session.rollback()
            self._ledger, self._records, self._closing = [], [], []
            self._delivered = []
            raise
        delivered, self._delivered = self._delivered, []
        self._ledger, self._records, self._closing = [], [], []
        if delivered and self.on_commit is not None:
            self.on_commit(delivered)

    def _write_quietly(self) -> None:
        try:
            self.commit()
        except Exception:  # the error being raised matters more; a crash-like state
            log.exception("account %s: could not record a delivery", self.account_id)

    def commit(self) -> None:
        """Make the deliveries durable (``flush``), then their ledger rows."""
        if self._session is not None:
            self._session.flush()
        self._write()

    def rollback(self) -> None:
        """Record what was delivered (it cannot be taken back); forget nothing else."""
        try:
            self.commit()
        except Exception:
            log.exception("account %s: deliveries not recorded; the next session looks "
                          "them up again", self.account_id)

    def close(self) -> None:
        """End the delivery session and the filters' helper."""
        if self._session is not None:
            session, self._session = self._session, None
            session.close()
        if self.classifier is not None:
            self.classifier.close()
