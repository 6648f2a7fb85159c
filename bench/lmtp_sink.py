"""A minimal LMTP server that delivers each message into a Maildir (fetchmail's sink).

Run as its own process::

    python -m bench.lmtp_sink --socket /path/lmtp.sock --maildir /path/Maildir

It prints ``READY`` once the Unix socket accepts connections. Each DATA is written to
``tmp/`` and renamed into ``new/`` (what a local delivery agent does), so the number of
files in ``new/`` is the number of messages delivered.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from aiosmtpd.lmtp import LMTP


class MaildirHandler:
    def __init__(self, maildir: Path) -> None:
        self.maildir = maildir
        self.n = 0
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.n += 1
        name = f"{time.time_ns()}.{os.getpid()}_{self.n}.lmtp"
        tmp = self.maildir / "tmp" / name
        data = envelope.original_content or envelope.content  # type: ignore[attr-defined]
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        tmp.write_bytes(data)
        os.rename(tmp, self.maildir / "new" / name)
        return "250 2.0.0 delivered"


async def serve(sock_path: str, maildir: Path) -> None:
    loop = asyncio.get_running_loop()
    handler = MaildirHandler(maildir)
    if os.path.exists(sock_path):
        os.unlink(sock_path)
    server = await loop.create_unix_server(
        lambda: LMTP(handler, enable_SMTPUTF8=True, decode_data=False), sock_path
    )
    os.chmod(sock_path, 0o777)  # noqa: S103 - the peer fetcher runs as an ordinary user
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("READY", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--maildir", required=True)
    args = ap.parse_args(argv)
    asyncio.run(serve(args.socket, Path(args.maildir)))
    sys.exit(0)


if __name__ == "__main__":
    main()
