"""The fetch algorithm: every message exactly once, whatever fails when.

The ledger commit is the point of truth (design.md, "The fetch, exactly once"):

1. connect (net), CAPA/STLS, authenticate;
2. UIDL + LIST, diff against the ledger as sets (one pass, no query per message);
3. RETR the new ones in order (pipelined), each streamed to a spool; a message is
   handed to the sink only once complete; ``sink.commit()`` in groups;
4. only UIDLs that are durably committed (this session or earlier) may be DELE'd;
5. QUIT; only after its +OK are deletions real, and only then is the ledger told.

Crash anywhere: uncommitted messages are rolled back and fetched again next time
(the server still has them); committed ones are in the ledger and never refetched.
DELEs without a completed QUIT are undone by the server, and the ledger still says
"on server", so they are simply deleted again next time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from .errors import UIDLReset
from .parse import parse_meta, read_header_section
from .pop3 import POP3Client
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
    RetrievalPolicy,
    RetrievedMessage,
    ServerSpec,
    Sink,
)

#: UIDL reset detection: how many known on-server UIDLs make the signal meaningful
UIDL_RESET_MIN_KNOWN = 5


def _utcnow() -> datetime:
    return datetime.now(UTC)


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
    now: Callable[[], datetime] | None = None,
) -> FetchReport:
    """One fetch session: store every new message exactly once, delete per policy.

    Raises the named errors of :mod:`.errors`; on any exception, messages staged
    since the last ``sink.commit()`` are rolled back (and fetched again next time).
    """
    clock = now or _utcnow
    report = FetchReport()
    client = _connect(server, creds, net)
    staged: list[str] = []
    try:
        report.capabilities = client.capabilities
        uidl_by_num = client.uidl()
        entries = ledger.entries()
        report.server_count = len(uidl_by_num)

        num_by_uidl: dict[str, int] = {}
        for num in sorted(uidl_by_num):
            # A UIDL listed twice is a server bug; take the first, never both.
            num_by_uidl.setdefault(uidl_by_num[num], num)
        server_uidls = set(num_by_uidl)

        known_on_server = {u for u, e in entries.items() if e.on_server}
        # Only messages we expect to still be there count as evidence of a reset: a
        # session killed between QUIT's +OK and mark_gone leaves entries marked "on
        # server" that our own policy has in fact deleted.
        expected = known_on_server - _deletable(policy, entries, [], known_on_server, clock())
        if not policy.accept_uidl_reset and detect_uidl_reset(expected, server_uidls):
            raise UIDLReset(
                detail=f"{len(expected)} expected, {len(server_uidls)} listed, none shared"
            )

        new_nums = [n for u, n in num_by_uidl.items() if u not in entries]
        new_nums.sort()
        # Sizes matter only for new mail: an idle poll saves LIST's round trip.
        sizes = client.list_sizes() if new_nums else {}
        report.new = len(new_nums)
        wanted: list[int] = []
        for n in new_nums:
            if sizes.get(n, 0) > policy.max_message_size:
                report.skipped_too_large.append(uidl_by_num[n])
            else:
                wanted.append(n)
        limit = max(0, policy.max_messages_per_session)
        if len(wanted) > limit:
            wanted = wanted[:limit]
            report.more_pending = True

        committed: list[str] = []
        total_bytes = sum(sizes.get(n, 0) for n in wanted)
        staged_bytes = 0
        done = 0
        for num, octets, spool in client.retrieve(wanted, sizes):
            uidl = uidl_by_num[num]
            meta = parse_meta(read_header_section(spool), octets, clock())
            staged.append(uidl)
            sink.add(RetrievedMessage(uidl=uidl, size=octets, spool=spool, meta=meta))
            staged_bytes += octets
            report.stored += 1
            report.bytes_stored += octets
            if len(staged) >= max(1, policy.commit_every) or staged_bytes >= policy.commit_bytes:
                sink.commit()
                committed.extend(staged)
                staged.clear()
                staged_bytes = 0
            done += 1
            if progress is not None:
                progress(Progress(len(wanted), done, total_bytes, report.bytes_stored))
        if staged:
            sink.commit()
            committed.extend(staged)
            staged.clear()

        to_delete = _deletable(policy, entries, committed, server_uidls, clock())
        nums = sorted(num_by_uidl[u] for u in to_delete)
        accepted = client.dele(nums) if nums else []
        client.quit()
        # QUIT answered +OK: the server has now really removed what it accepted.
        report.deleted = len(accepted)
        gone = {uidl_by_num[n] for n in accepted}
        gone |= known_on_server - server_uidls
        if gone:
            ledger.mark_gone(gone)
        return report
    except BaseException:
        # Staged but uncommitted: undo, so nothing half-stored survives. (Committed
        # messages stay; the ledger knows them.) This also covers report counters.
        if staged:
            sink.rollback()
        raise
    finally:
        client.close()


def _deletable(
    policy: RetrievalPolicy,
    entries: Mapping[str, LedgerEntry],
    committed: list[str],
    server_uidls: set[str],
    now: datetime,
) -> set[str]:
    """UIDLs to DELE: only ones durably stored (this session or before) and still listed.

    ``AFTER_DAYS`` with ``delete_after_days <= 0`` behaves as ``DELETE``.
    """
    ledger_entries = entries
    if policy.delete is DeletePolicy.KEEP:
        return set()
    if policy.delete is DeletePolicy.DELETE or policy.delete_after_days <= 0:
        return (set(committed) | set(ledger_entries)) & server_uidls
    cutoff = now - timedelta(days=policy.delete_after_days)
    return {
        u
        for u, e in ledger_entries.items()
        if u in server_uidls and _aware(e.stored_at) <= cutoff
    }


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
