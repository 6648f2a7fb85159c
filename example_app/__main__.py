"""``python -m example_app``: serve the example webmail on http://127.0.0.1:5000,
with the demo mailbox beside it (a POP3 and an SMTP server on loopback).

HOST and PORT in the environment change where it listens; ``DEMO_MAILBOX=0`` leaves
the demo mailbox out; ``DEMO_POP3_PORT`` / ``DEMO_SMTP_PORT`` move it.
"""

from __future__ import annotations

import os

from flask import Flask

from . import create_app, start_demo
from .demo_mailbox import DEMO_POP3_PORT, DEMO_SMTP_PORT


def main() -> None:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "5000"))
    with_demo = os.environ.get("DEMO_MAILBOX", "1").lower() not in ("0", "false", "no", "")
    demo = None
    if with_demo:
        app, demo = start_demo(pop3_port=_port("DEMO_POP3_PORT"),
                               smtp_port=_port("DEMO_SMTP_PORT"))
    else:
        app = create_app()
    try:
        print(f"Example webmail: http://{host}:{port}/  (Ctrl+C to stop)")
        print("  Sign in as alice or bob (their passwords are printed on the first run;"
              " `flask --app example_app create-demo-users` sets new ones).")
        if demo is not None:
            print(f"Demo mailbox on this machine: {demo.address}, "
                  f"{len(demo.mailbox.snapshot())} messages")
            print(f"  POP3 127.0.0.1:{demo.pop3_port} (STARTTLS), SMTP 127.0.0.1:"
                  f"{demo.smtp_port} (STARTTLS), user {demo.mailbox.user}, password "
                  f"{demo.mailbox.password}")
            for what, asked, default, got in (
                    ("POP3", _port("DEMO_POP3_PORT"), DEMO_POP3_PORT, demo.pop3_port),
                    ("SMTP", _port("DEMO_SMTP_PORT"), DEMO_SMTP_PORT, demo.smtp_port)):
                wanted = default if asked is None else asked
                if wanted and wanted != got:
                    print(f"  (port {wanted} was busy, so {what} is on {got}: a demo account "
                          "added in an earlier run needs its port edited, with the password above)")
            print("  Add it: Settings > Mail Accounts > Add account > POP3 > "
                  "“Demo mailbox (this machine)” > Test and save.")
            print("  Send-as confirmation codes are emailed to it: after “Check now”"
                  " they are in its mail.")
        app.run(host=host, port=port, debug=False, use_reloader=False)
    finally:
        _stop(app)
        if demo is not None:
            demo.stop()


def _port(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def _stop(app: Flask) -> None:
    """Let running fetches finish and release their claims (a clean Ctrl+C)."""
    from flask_popaccounts import get_state

    sched = get_state(app).scheduler
    if sched is not None:
        sched.shutdown(wait=True)


if __name__ == "__main__":
    main()
