"""``flask popaccounts fetch --account ID`` in a process of its own, over a slow line.

    python -m tests.scheduler.cli_worker DB_URL ACCOUNT_ID CONFIG_JSON

The crash test's victim: builds the test host app on DB_URL with CONFIG_JSON, makes
each message take 50 ms (as over a slow line, so the test can kill it mid-fetch) and
runs the command as a user would; prints ``STARTED`` first.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def main(argv: list[str]) -> int:
    url, account_id, config = argv[0], argv[1], json.loads(argv[2])

    from flask_popaccounts.services import fetching
    from tests.support.flaskapp import make_app

    original = fetching.fetch_account

    def slow(app: Any, aid: int, *, progress: Any = None, **kw: Any) -> Any:
        def on_progress(p: Any) -> None:
            time.sleep(0.05)
            if progress is not None:
                progress(p)

        return original(app, aid, progress=on_progress, **kw)

    fetching.fetch_account = slow  # type: ignore[assignment]
    app = make_app(url, create=False, **config)
    print("STARTED", flush=True)
    result = app.test_cli_runner().invoke(args=["popaccounts", "fetch", "--account",
                                                account_id])
    print(result.output, flush=True)
    return int(result.exit_code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
