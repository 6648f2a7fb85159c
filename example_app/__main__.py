"""``python -m example_app``: serve the example webmail on http://127.0.0.1:5000.

HOST and PORT in the environment change where it listens.
"""

from __future__ import annotations

import os

from . import create_app


def main() -> None:
    app = create_app()
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "5000"))
    print(f"Example webmail: http://{host}:{port}/  (Ctrl+C to stop)")
    app.run(host=host, port=port, debug=False, use_reloader=False)


if __name__ == "__main__":
    main()
