"""The crash test's victim: fetch one account with filters, SIGKILL itself mid-way.

    python -m tests.filters.kill_worker TMP ACCOUNT_ID KILL_AT CONFIG_JSON

Commits every 2 messages, and kills itself (SIGKILL: no cleanup, no rollback) when the
engine reports message KILL_AT done: some groups are durable, one is staged.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

from flask_popaccounts.engine.types import Progress
from flask_popaccounts.services import fetching
from tests.web.conftest import make_example


def main(argv: list[str]) -> int:
    tmp, account_id, kill_at, config = argv[0], int(argv[1]), int(argv[2]), json.loads(argv[3])
    base = fetching.retrieval_policy_for
    fetching.retrieval_policy_for = lambda app, acc: replace(base(app, acc), commit_every=2)  # type: ignore[assignment]
    app = make_example(Path(tmp), **config)

    def progress(p: Progress) -> None:
        if p.done >= kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    with app.app_context():
        fetching.fetch_account(app, account_id, progress=progress)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
