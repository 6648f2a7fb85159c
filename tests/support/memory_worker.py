"""Fetch one mailbox into files on disk and report peak memory above the baseline.

Conservative: the baseline is the resident size just before the fetch, the peak is
the process's high-water mark (which also covers the import phase).

    python -m tests.support.memory_worker HOST PORT CA_FILE USER PASSWORD OUT_DIR

Prints JSON: {"baseline_kib", "peak_kib", "stored": [[uidl, size, sha256], ...]}.
The sink copies each spool to a file in chunks, as a real message store would.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path

from flask_popaccounts.engine import (
    AuthMethod,
    Credentials,
    LedgerEntry,
    NetPolicy,
    RetrievalPolicy,
    RetrievedMessage,
    Security,
    ServerSpec,
    fetch,
)


class FileStore:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.ledger: dict[str, LedgerEntry] = {}
        self.staged: list[tuple[str, int, str]] = []
        self.stored: list[tuple[str, int, str]] = []

    def entries(self) -> Mapping[str, LedgerEntry]:
        return dict(self.ledger)

    def mark_gone(self, uidls: Collection[str]) -> None:
        for u in uidls:
            self.ledger[u] = LedgerEntry(self.ledger[u].stored_at, False)

    def add(self, message: RetrievedMessage) -> None:
        h = hashlib.sha256()
        with open(self.out / message.uidl, "wb") as f:
            while chunk := message.spool.read(256 * 1024):
                h.update(chunk)
                f.write(chunk)
        self.staged.append((message.uidl, message.size, h.hexdigest()))

    def commit(self) -> None:
        for uidl, size, digest in self.staged:
            self.ledger[uidl] = LedgerEntry(datetime.now(UTC), True)
            self.stored.append((uidl, size, digest))
        self.staged.clear()

    def rollback(self) -> None:
        self.staged.clear()


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def main(argv: list[str]) -> int:
    host, port, ca, user, password, out = argv[:6]
    store = FileStore(Path(out))
    net = NetPolicy(allow_private=True, allowed_ports=frozenset({int(port)}), ca_file=ca)
    baseline = _status_kib("VmRSS")  # what the process holds right now
    fetch(ServerSpec(host, int(port), Security.SSL, user),
          Credentials(AuthMethod.PASSWORD, password),
          RetrievalPolicy(max_message_size=64 * 1024 * 1024), store, store, net=net)
    peak = _status_kib("VmHWM")  # high-water mark: >= any peak during the fetch
    print(json.dumps({"baseline_kib": baseline, "peak_kib": peak, "stored": store.stored}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
