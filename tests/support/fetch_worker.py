"""Runs fetch sessions into a SqliteStore until nothing is pending; the kill test's victim.

    python -m tests.support.fetch_worker DB HOST PORT CA USER PASSWORD [COMMIT_EVERY [PER_SESSION]]

Prints one line per message (``P done/total``) and ``DONE`` at the end; exits 3 with
``ERR code`` on a named engine error. Deletes from the server after storing.
"""

from __future__ import annotations

import sys

from flask_popaccounts.engine import (
    AuthMethod,
    Credentials,
    DeletePolicy,
    NetPolicy,
    PopAccountsError,
    Progress,
    RetrievalPolicy,
    Security,
    ServerSpec,
    fetch,
)
from tests.support.sqlite_store import SqliteStore


def main(argv: list[str]) -> int:
    db, host, port, ca, user, password = argv[:6]
    commit_every = int(argv[6]) if len(argv) > 6 else 8
    per_session = int(argv[7]) if len(argv) > 7 else 60
    store = SqliteStore(db)
    net = NetPolicy(allow_private=True, allowed_ports=frozenset({int(port)}), ca_file=ca,
                    connect_timeout=5, read_timeout=20)
    policy = RetrievalPolicy(delete=DeletePolicy.DELETE, commit_every=commit_every,
                             max_messages_per_session=per_session)

    def progress(p: Progress) -> None:
        sys.stdout.write(f"P {p.done}/{p.total}\n")
        sys.stdout.flush()

    try:
        while True:
            report = fetch(ServerSpec(host, int(port), Security.SSL, user),
                           Credentials(AuthMethod.PASSWORD, password), policy, store, store,
                           net=net, progress=progress)
            if not report.more_pending:
                break
    except PopAccountsError as exc:
        print(f"ERR {exc.code} {exc.detail}", flush=True)
        return 3
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
