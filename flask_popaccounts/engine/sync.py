"""The fetch algorithm: every message exactly once, whatever fails when.

The ledger commit is the point of truth (design.md, "The fetch, exactly once"):

1. connect (net), CAPA/STLS, authenticate;
2. UIDL + LIST, diff against the ledger as sets (one pass, no query per message);
   (a first import "from now on" records the listing as seen and QUITs: :mod:`.firstimport`);
3. RETR the new ones in order (pipelined), each streamed to a spool; a message is
   handed to the sink only once complete; ``sink.commit()`` in groups;
4. only UIDLs that are durably committed (this session or earlier) may be DELE'd;
5. QUIT; only after its +OK are deletions real, and only then is the ledger told.

Crash anywhere: uncommitted messages are rolled back and fetched again next time
(the server still has them); committed ones are in the ledger and never refetched.
DELEs without a completed QUIT are undone by the server, and the ledger still says
"on server", so they are simply deleted again next time.

A failure on the server's side of the session (the connection lost or timed out, the
session deadline, the server busy or refusing) does not cost the messages that had
arrived complete: they are committed before the error is raised, so the next session
fetches again at most the message that was in flight (``FetchReport.in_flight``). A
:class:`~.errors.ProtocolError` (the stream may have lost step) and any failure of the
sink roll back instead. Pass ``report=`` to read what a failed session did.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .clock import Clock, utcnow
from .errors import ConnectionFailed, ServerBusy, ServerRefused, UIDLReset
from .firstimport import mark_listing_seen
from .parse import parse_meta, read_header_section
from .pop3 import POP3Client
from .pop3wire import POP3Error
from .safety import check_fields
from .types import (
    Credentials,
    DeletePolicy,
    FetchReport,
    Ledger,
    LedgerEntry,
    NetPolicy,
    Progress,
    ProgressCallback,
    Refused,
    RetrievalPolicy,
    RetrievedMessage,
    ServerSpec,
    Sink,
    TooLarge,
)

#: Failures after which the complete messages staged so far are committed (the bytes
#: read were framed correctly; the connection or the server just ended the session).
SALVAGE_ON = (ConnectionFailed, ServerBusy, ServerRefused)

#: TOP of a message over the size limit: lines accepted, bytes of them kept
TOP_MAX_LINES = 100_000
TOP_KEEP = 64 * 1024

#: UIDL reset detection: how many known on-server UIDLs make the signal meaningful
UIDL_RESET_MIN_KNOWN = 5


def _connect(server: ServerSpec, creds: Credentials, net: NetPolicy) -> POP3Client:
    # The secret too, before connecting: a refused one should not cost a connection.
    check_fields(host=server.host, username=server.username, secret=creds.secret)
    client = POP3Client.open(server, net)
    try:
        client.login(server.username, creds)
    except BaseException:
        client.close()
        raise
    return client


def check_login(server: ServerSpec, creds: Credentials, *, net: NetPolicy) -> frozenset[str]:
    """Connect, authenticate, STAT and UIDL, QUIT; returns the server's capabilities.

    What the add-account wizard's Test button runs (R6). Raises the named errors,
    including :class:`~.errors.UIDLUnsupported` (we would refuse to fetch anyway).
    """
    client = _connect(server, creds, net)
    try:
        client.stat()
        client.uidl()
        caps = client.capabilities
        client.quit()
        return caps
    finally:
        client.close()


def detect_uidl_reset(
    known_on_server: set[str], server_uidls: set[str], *, min_known: int = UIDL_RESET_MIN_KNOWN
) -> bool:
    """True when none of many known UIDLs is listed, yet the server holds plenty of mail.

    A mailbox the user emptied elsewhere lists few messages; a rebuilt one (new
    UIDVALIDITY, provider migration) lists about as many as before under new names.
    """
    if len(known_on_server) < min_known:
        return False
    if known_on_server & server_uidls:
        return False
    return len(server_uidls) * 2 >= len(known_on_server)


def fetch(
    server: ServerSpec,
    creds: Credentials,
    policy: RetrievalPolicy,
    ledger: Ledger,
    sink: Sink,
    *,
    net: NetPolicy,
    progress: ProgressCallback | None = None,
    now: Clock | None = None,
    report: FetchReport | None = None,
    fence: Callable[[], None] | None = None,
) -> FetchReport:
    """One fetch session: store every new message exactly once, delete per policy.

    ``now`` is the clock (default :func:`~.clock.utcnow`): message fetch times and the
    delete-after-days cutoff come from it. Raises the named errors of :mod:`.errors`.
    On a failure of the server's side (:data:`SALVAGE_ON`) the complete messages staged
    since the last ``sink.commit()`` are committed first; on any other exception they
    are rolled back (and fetched again next time). ``report`` (optional) is filled in
    as the session goes, so the caller can see what a failed session did. ``fence``
    (optional) is called before the DELEs and again before QUIT; it raises to stop the
    session there (the caller lost its claim on the account): the connection is then
    dropped without QUIT, so the server keeps every message.
    """
    clock = now or utcnow
    report = report if report is not None else FetchReport()
    client = _connect(server, creds, net)
    batch = _GroupCommit(sink, policy)
    try:
        report.capabilities = client.capabilities
        mailbox = _survey(client, ledger, policy, report, clock())
        if policy.mark_listing_seen:  # the first import "from now on" (firstimport.py)
            mark_listing_seen(client, mailbox.server_uidls, mailbox.entries, ledger, report,
                              fence or _no_fence)
            return report
        wanted, sizes = _select(client, mailbox, policy, report)
        _retrieve(client, wanted, sizes, mailbox, batch, report, progress, clock)
        _delete_and_quit(client, policy, mailbox, batch.committed, ledger, report, clock(),
                         fence or _no_fence)
        return report
    except SALVAGE_ON:
        if batch.sink_failed:
            report.in_flight = None
            batch.rollback()
        else:
            # Keep what arrived complete; the in-flight one is asked for again.
            salvaged = len(batch.staged)
            batch.commit()
            report.committed_on_failure = salvaged
        raise
    except BaseException:
        # Staged but uncommitted: undo, so nothing half-stored survives. (Committed
        # messages stay; the ledger knows them.) This also covers report counters.
        report.in_flight = None
        batch.rollback()
        raise
    finally:
        client.close()


@dataclass
class _Mailbox:
    """What the server lists, side by side with what the ledger knows."""

    uidl_by_num: dict[int, str]
    num_by_uidl: dict[str, int]
    entries: Mapping[str, LedgerEntry]
    known_on_server: set[str]  #: UIDLs the ledger believes are still on the server

    @property
    def server_uidls(self) -> set[str]:
        return set(self.num_by_uidl)


def _survey(client: POP3Client, ledger: Ledger, policy: RetrievalPolicy, report: FetchReport,
            now: datetime) -> _Mailbox:
    """UIDL against the ledger; refuses a mailbox whose every UIDL changed (UIDLReset)."""
    uidl_by_num = client.uidl()
    entries = ledger.entries()
    report.server_count = len(uidl_by_num)
    # Keys are unique: the client keys a repeated or non-RFC UIDL by a hash (pop3.uidl).
    report.uidl_duplicates = client.uidl_duplicates
    report.uidl_nonconforming = client.uidl_nonconforming
    num_by_uidl = {uidl: num for num, uidl in uidl_by_num.items()}
    known_on_server = {u for u, e in entries.items() if e.on_server}
    mailbox = _Mailbox(uidl_by_num, num_by_uidl, entries, known_on_server)
    server_uidls = mailbox.server_uidls
    # Only messages we expect to still be there count as evidence of a reset: a
    # session killed between QUIT's +OK and mark_gone leaves entries marked "on
    # server" that our own policy has in fact deleted.
    expected = known_on_server - _deletable(policy, entries, [], known_on_server, now)
    if not policy.accept_uidl_reset and detect_uidl_reset(expected, server_uidls):
        raise UIDLReset(
            detail=f"{len(expected)} expected, {len(server_uidls)} listed, none shared"
        )
    return mailbox


def _select(client: POP3Client, mailbox: _Mailbox, policy: RetrievalPolicy,
            report: FetchReport) -> tuple[list[int], dict[int, int]]:
    """The message numbers to RETR this session (in order) and the LIST sizes.

    UIDLs in ``policy.skip_uidls`` (set aside, or known to be too large) count as
    neither new nor wanted, so an idle poll with nothing else new sends no LIST.
    """
    known = mailbox.entries
    skip = policy.skip_uidls - policy.fetch_anyway
    report.not_listed = sorted(policy.remembered - mailbox.server_uidls)
    new_nums = sorted(n for u, n in mailbox.num_by_uidl.items()
                      if u not in known and u not in skip)
    # Sizes matter only for new mail: an idle poll saves LIST's round trip.
    sizes = client.list_sizes() if new_nums else {}
    report.new = len(new_nums)
    wanted: list[int] = []
    for n in new_nums:
        uidl = mailbox.uidl_by_num[n]
        if sizes.get(n, 0) > policy.max_message_size and uidl not in policy.fetch_anyway:
            report.skipped_too_large.append(uidl)
            report.too_large[uidl] = _peek(client, n, sizes[n],
                                           len(report.too_large) < policy.max_top)
        else:
            wanted.append(n)
    limit = max(0, policy.max_messages_per_session)
    if len(wanted) > limit:
        wanted = wanted[:limit]
        report.more_pending = True
    return wanted, sizes


def _peek(client: POP3Client, num: int, size: int, ask: bool) -> TooLarge:
    """What TOP tells of a message left on the server for its size (sender, subject)."""
    head = _top(client, num) if ask and "TOP" in client.capabilities else None
    if head is None:
        return TooLarge(size)
    meta = parse_meta(read_header_section(io.BytesIO(head)), size, utcnow())
    return TooLarge(size, meta.from_addr[:200], meta.subject[:200])


def _top(client: POP3Client, num: int) -> bytes | None:
    """``TOP num 0``: the header section (its first :data:`TOP_KEEP` bytes, CRLF line
    ends); None on -ERR (TOP is optional in RFC 1939). Every line is read, so the
    session stays in step. (Through the client's listing reader; pop3.py is full.)"""
    try:
        lines = client._listing(f"TOP {int(num)} 0", TOP_MAX_LINES)
    except POP3Error:
        return None
    head = bytearray()
    for line in lines:
        if len(head) < TOP_KEEP:
            head += line + b"\r\n"
    return bytes(head)


class _GroupCommit:
    """Messages handed to the sink, made durable in groups (``commit_every``/``commit_bytes``)."""

    def __init__(self, sink: Sink, policy: RetrievalPolicy) -> None:
        self.sink = sink
        self.policy = policy
        self.staged: list[str] = []
        self.committed: list[str] = []  #: durable UIDLs of this session: they may be DELE'd
        self._staged_bytes = 0
        self.sink_failed = False  #: the sink raised: what it staged must not be committed

    def add(self, message: RetrievedMessage) -> None:
        # Staged first: if the sink refuses half-way (quota), the rollback still runs.
        self.staged.append(message.uidl)
        try:
            self.sink.add(message)
        except BaseException:
            self.sink_failed = True
            raise
        self._staged_bytes += message.size

    def commit_if_due(self) -> None:
        if (len(self.staged) >= max(1, self.policy.commit_every)
                or self._staged_bytes >= self.policy.commit_bytes):
            self.commit()

    def commit(self) -> None:
        if self.staged:
            try:
                self.sink.commit()
            except BaseException:
                self.sink_failed = True
                raise
            self.committed.extend(self.staged)
            self.staged.clear()
            self._staged_bytes = 0

    def rollback(self) -> None:
        if self.staged:
            self.sink.rollback()


def _retrieve(client: POP3Client, wanted: list[int], sizes: dict[int, int], mailbox: _Mailbox,
              batch: _GroupCommit, report: FetchReport, progress: ProgressCallback | None,
              clock: Clock) -> None:
    """RETR ``wanted`` (pipelined), each complete message to the sink; commit them all."""
    total_bytes = sum(sizes.get(n, 0) for n in wanted)
    done = 0
    items = client.retrieve(wanted, sizes)
    for pos in range(len(wanted)):
        # In flight until it is complete: named if the connection fails meanwhile.
        report.in_flight = mailbox.uidl_by_num[wanted[pos]]
        report.in_flight_size = sizes.get(wanted[pos], 0)
        item = next(items)
        report.in_flight, report.in_flight_size = None, 0
        done += 1
        if isinstance(item, Refused):
            # Not stored, so never deleted; asked for again next session.
            report.refused[mailbox.uidl_by_num[item.num]] = item.text
            continue
        num, octets, spool = item
        uidl = mailbox.uidl_by_num[num]
        meta = parse_meta(read_header_section(spool), octets, clock())
        batch.add(RetrievedMessage(uidl=uidl, size=octets, spool=spool, meta=meta))
        report.stored += 1
        report.bytes_stored += octets
        batch.commit_if_due()
        if progress is not None:
            progress(Progress(len(wanted), done, total_bytes, report.bytes_stored,
                              backlog=report.new - len(report.skipped_too_large)))
    for _ in items:  # pragma: no cover - one item per message asked for
        pass
    batch.commit()


def _delete_and_quit(client: POP3Client, policy: RetrievalPolicy, mailbox: _Mailbox,
                     committed: list[str], ledger: Ledger, report: FetchReport,
                     now: datetime, fence: Callable[[], None]) -> None:
    """DELE what the policy lets go (durable copies only), QUIT, then tell the ledger."""
    server_uidls = mailbox.server_uidls
    # Deleted before (DELE and QUIT accepted), yet listed again: the server kept them.
    if policy.delete is not DeletePolicy.KEEP:  # (we never deleted anything otherwise)
        report.reappeared = sorted(u for u in server_uidls if u in mailbox.entries
                                   and not mailbox.entries[u].on_server)
    to_delete = _deletable(policy, mailbox.entries, committed, server_uidls, now)
    to_delete -= policy.hold_dele
    nums = sorted(mailbox.num_by_uidl[u] for u in to_delete)
    fence()
    accepted = client.dele(nums) if nums else []
    report.dele_refused = sorted(mailbox.uidl_by_num[n] for n in set(nums) - set(accepted))
    fence()  # DELEs count only after QUIT: a fetch fenced off here deletes nothing
    client.quit()
    # QUIT answered +OK: the server has now really removed what it accepted.
    gone = {mailbox.uidl_by_num[n] for n in accepted}
    # Not counted: those the server said it deleted before and listed again.
    report.deleted = len(gone - set(report.reappeared))
    gone |= mailbox.known_on_server - server_uidls
    if gone:
        ledger.mark_gone(gone)


def _no_fence() -> None:
    pass


def _deletable(
    policy: RetrievalPolicy,
    entries: Mapping[str, LedgerEntry],
    committed: list[str],
    server_uidls: set[str],
    now: datetime,
) -> set[str]:
    """UIDLs to DELE: only ones durably stored (this session or before) and still listed
    (never those only seen at a first import "from now on").

    ``AFTER_DAYS`` with ``delete_after_days <= 0`` behaves as ``DELETE``.
    """
    if policy.delete is DeletePolicy.KEEP:
        return set()
    kept = {u for u, e in entries.items() if e.seen_only}  # never stored here: never deleted
    if policy.delete is DeletePolicy.DELETE or policy.delete_after_days <= 0:
        return ((set(committed) | set(entries)) & server_uidls) - kept
    cutoff = now - timedelta(days=policy.delete_after_days)
    return {u for u, e in entries.items() if u in server_uidls and u not in kept
            and _aware(e.stored_at) <= cutoff}


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
