"""The first import "from now on": what the server holds at the first check stays there.

POP3 cannot select mail by date (R17), so "only mail that arrives from now on" is done
with the ledger: the first session after the choice lists the mailbox (UIDL) and records
every UIDL not known yet as *seen* (:attr:`~.types.LedgerEntry.seen_only`), downloading
nothing and deleting nothing, then QUITs. Every later session fetches only UIDLs the
ledger does not know: exactly the mail that arrived since. The seen UIDLs were never
stored here, so no delete policy ever removes them from the server
(:func:`~.sync._deletable` leaves them out).

The ledger records them and the end of the first import in one transaction
(:meth:`~.types.SeenLedger.mark_seen`): a crash before that commit leaves the choice
pending and the next session lists again; after it, never again.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import cast

from .pop3 import POP3Client
from .types import FetchReport, Ledger, SeenLedger


def mark_listing_seen(client: POP3Client, server_uidls: Collection[str],
                      known: Collection[str], ledger: Ledger, report: FetchReport,
                      fence: Callable[[], None]) -> None:
    """Record every listed UIDL not in ``known`` as seen, durably; then QUIT."""
    unseen = set(server_uidls) - set(known)
    fence()  # a fetch that lost its claim on the account records nothing
    cast(SeenLedger, ledger).mark_seen(unseen)
    report.marked_seen = len(unseen)
    client.quit()
