"""Dovecot's own LMTP server as the delivery sink of the fetch benchmark (``dovecot-lmtpd``).

A separate, minimal Dovecot instance (``protocols = lmtp``) that delivers every
recipient into ``root/mail/<user>/Maildir`` as ``nobody``, with two listeners into the
same delivery: a Unix socket (``socket``, fetchmail's ``lmtp smtphost``) and TCP on
127.0.0.1 (``port``, plaintext, what our ``Lmtp`` delivery hook connects to). A real
delivery agent in C, so the sink is never the bottleneck of a run (the Python LMTP sink
in ``lmtp_sink.py`` costs ~3 ms of CPU per message and is only fetchmail's fallback
when ``dovecot-lmtpd`` is not installed). One instance serves the whole benchmark; each
run delivers to a recipient of its own (:meth:`DovecotLMTP.maildir`), removed after
its check (:meth:`DovecotLMTP.remove`).
"""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import subprocess
import time
import uuid
from pathlib import Path

from tests.support.dovecot import free_port, stop_master

LMTP_BINARY = "/usr/lib/dovecot/lmtp"
MAIL_UID = MAIL_GID = 65534  # nobody / nogroup


def available() -> bool:
    return os.path.exists(LMTP_BINARY)


class DovecotLMTP:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "lmtp.sock"
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    def maildir(self, user: str) -> Path:
        """Where mail for ``user`` (``user@anything`` too) is delivered."""
        return self.root / "mail" / user / "Maildir"

    def remove(self, user: str) -> None:
        """Delete ``user``'s mail (after a run's check; the next run has its own user)."""
        shutil.rmtree(self.root / "mail" / user, ignore_errors=True)

    def start(self) -> None:
        r = self.root
        r.mkdir(parents=True, exist_ok=True)
        r.chmod(0o755)
        (r / "mail").mkdir(exist_ok=True)
        os.chown(r / "mail", MAIL_UID, MAIL_GID)
        conf = r / "dovecot.conf"
        conf.write_text(f"""\
protocols = lmtp
listen = 127.0.0.1
base_dir = {r}/run
state_dir = {r}/state
instance_name = benchlmtp-{uuid.uuid4().hex[:8]}
log_path = {r}/dovecot.log
ssl = no
mail_location = maildir:{r}/mail/%n/Maildir
# fetchmail's fastest honest path: real Maildir files, no fsync per message (our own
# engine is measured with SQLite synchronous=FULL, the stricter side of this contest)
mail_fsync = never
auth_username_format = %Ln
service lmtp {{
  unix_listener {self.socket} {{
    mode = 0666
  }}
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.port}
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@localhost
}}
service anvil {{
  chroot =
}}
passdb {{
  driver = static
  args = nopassword=y
}}
userdb {{
  driver = static
  args = uid={MAIL_UID} gid={MAIL_GID} home={r}/mail/%n allow_all_users=yes
}}
""")
        self._proc = subprocess.Popen(
            ["dovecot", "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
            stderr=open(r / "dovecot.stderr", "wb"),
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while not (self.socket.exists() and _listening(self.port)):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    "Dovecot LMTP did not start: "
                    + (r / "dovecot.stderr").read_text(errors="replace")
                    + ((r / "dovecot.log").read_text(errors="replace")
                       if (r / "dovecot.log").exists() else "")
                )
            time.sleep(0.05)

    def warm_up(self, messages: int = 20) -> None:
        """A few deliveries over TCP to a throwaway recipient (removed), so the first
        timed run does not pay for the instance's first deliveries."""
        with smtplib.LMTP("127.0.0.1", self.port, timeout=30) as c:
            c.ehlo("localhost")
            for i in range(messages):
                c.sendmail("", ["warm-up@bench.test"],
                           f"Subject: warm-up {i}\r\n\r\nwarm-up\r\n".encode())
        self.remove("warm-up")

    def stop(self) -> None:
        stop_master(self._proc)
        self._proc = None

    def __enter__(self) -> DovecotLMTP:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
