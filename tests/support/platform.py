"""The host's "existing mail platform" for delivery tests: a second Dovecot, LMTP in, IMAP out.

:class:`Platform` is a :class:`~tests.support.dovecot.Dovecot` (its own users, its own
Maildirs, TLS from its own test CA) that also speaks LMTP (STARTTLS offered, as
Dovecot does over TCP) on ``lmtp_port`` and IMAP with implicit TLS on ``imaps_port``,
both on 127.0.0.1. Its users are looked up in the same passwd-files for LMTP too
(``alice@platform.test`` and so on), so an unknown recipient gets Dovecot's
``550 5.1.1``. ``user+Folder@domain`` saves into Folder (``lmtp_save_to_detail_mailbox``);
Junk exists in every mailbox.

:meth:`Platform.messages` reads a user's folder back over IMAP (imaplib, the test CA
verified), each message's bytes as the platform keeps them; :func:`as_fetched` takes
away what the delivery put in front (Dovecot's Return-Path, Delivered-To and Received,
then our ``X-PopAccounts-Id``), which leaves the bytes as the outside server had them.
"""

from __future__ import annotations

import imaplib
import re
import ssl

from tests.support.dovecot import MAIL_GID, MAIL_UID, Dovecot, free_port

DOMAIN = "platform.test"
_ID_LINE = re.compile(rb"^X-PopAccounts-Id: ([0-9a-f]+)\r\n", re.M)


class Platform(Dovecot):
    """A Dovecot with LMTP and IMAPS listeners; see the module docstring."""

    def __init__(self, **kw: object) -> None:
        self.lmtp_port = free_port()
        self.imaps_port = free_port()
        super().__init__(**kw)  # type: ignore[arg-type]

    def _config(self) -> str:
        conf = super()._config().replace("protocols = pop3\n", "protocols = pop3 imap lmtp\n")
        # LMTP looks users up in the userdb: the passwd-files, so that unknown ones are 550.
        userdb = (f"userdb {{\n  driver = passwd-file\n"
                  f"  args = username_format=%u {self.users_path}/%u\n"
                  f"  default_fields = uid={MAIL_UID} gid={MAIL_GID} "
                  f"home={self.root}/mail/%u\n}}\n")
        conf, n = re.subn(r"userdb \{\n.*?\n\}\n", userdb, conf, flags=re.S)
        assert n == 1, "the Dovecot helper's userdb block moved"
        return conf + f"""
recipient_delimiter = +
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Junk {{
    auto = create
    special_use = \\Junk
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.lmtp_port}
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@{DOMAIN}
  lmtp_save_to_detail_mailbox = yes
}}
"""

    def imap(self, user: str) -> imaplib.IMAP4_SSL:
        """A signed-in IMAP session of ``user`` (the caller logs out)."""
        ctx = ssl.create_default_context(cafile=self.ca_file)
        im = imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=ctx, timeout=20)
        im.login(user, self._users[user])
        return im

    def messages(self, user: str, folder: str = "INBOX") -> list[bytes]:
        """Every message in ``folder`` of ``user``, as the platform stores it."""
        im = self.imap(user)
        try:
            typ, _ = im.select(f'"{folder}"', readonly=True)
            if typ != "OK":
                return []
            typ, data = im.uid("SEARCH", "ALL")
            uids = data[0].split() if data and data[0] else []
            out = []
            for uid in uids:
                typ, parts = im.uid("FETCH", uid, "(BODY.PEEK[])")
                assert typ == "OK", parts
                out.append(next(p[1] for p in parts if isinstance(p, tuple)))
            return out
        finally:
            im.logout()


def as_fetched(stored: bytes) -> tuple[str, bytes]:
    """(delivery id, the message as fetched): what follows our X-PopAccounts-Id line."""
    found = _ID_LINE.search(stored)
    assert found is not None, stored[:300]
    # Only headers the platform prepends may come before ours.
    assert stored[:found.start()].count(b"\r\n\r\n") == 0
    return found.group(1).decode(), stored[found.end():]
