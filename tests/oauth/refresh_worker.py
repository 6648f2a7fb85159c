"""One process asking for fresh credentials at an agreed instant (test_refresh_pg.py).

argv: database URL, JSON config, account id, start time (epoch seconds). Prints the
access token it got (or the error code).
"""

from __future__ import annotations

import json
import sys
import time

from flask_popaccounts.engine.errors import PopAccountsError
from flask_popaccounts.services import credentials
from tests.support.flaskapp import dispose, make_app


def main() -> None:
    url, config, account_id, start = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), \
        float(sys.argv[4])
    app = make_app(url, create=False, **config)
    with app.app_context():
        from flask_popaccounts import get_state

        get_state(app).engine.connect().close()  # connect before the starting line
    time.sleep(max(0.0, start - time.time()))
    try:
        print(credentials.ensure_fresh_credentials(app, account_id).secret)
    except PopAccountsError as exc:
        print(f"ERROR {exc.code}")
    dispose(app)


if __name__ == "__main__":
    main()
