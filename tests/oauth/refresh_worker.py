"""One process asking for fresh credentials when the test says go (test_refresh_pg.py).

argv: database URL, JSON config, account id. Connects to the database, prints ``READY``
and waits for a line on stdin; the test sends it to all the processes at once when all
are ready (a start barrier, not an agreed wall-clock instant). Then prints the access
token it got (or the error code).
"""

from __future__ import annotations

import json
import sys

from flask_popaccounts.engine.errors import PopAccountsError
from flask_popaccounts.services import credentials
from tests.support.flaskapp import dispose, make_app


def main() -> None:
    url, config, account_id = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    app = make_app(url, create=False, **config)
    with app.app_context():
        from flask_popaccounts import get_state

        get_state(app).engine.connect().close()  # connect before the starting line
    print("READY", flush=True)
    sys.stdin.readline()  # go
    try:
        print(credentials.ensure_fresh_credentials(app, account_id).secret, flush=True)
    except PopAccountsError as exc:
        print(f"ERROR {exc.code}", flush=True)
    dispose(app)


if __name__ == "__main__":
    main()
