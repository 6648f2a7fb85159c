"""LMTP delivery into the host's mail server (Dovecot, Cyrus, Postfix), with a read-back.

``Lmtp(host, port, recipient=fn)``: ``fn(owner_id, account_id)`` is the address the
platform delivers to (its own user). The connection goes through the engine's safe
connect (:mod:`...engine.lmtp`): the server is the host's, so a private or loopback
address is allowed, but TLS is verified against ``POPACCOUNTS_CA_FILE`` and the system
store; STARTTLS is the default and required (``security=Security.SSL`` for implicit
TLS, ``Security.PLAIN`` only when the host says so, e.g. over loopback);
``username``/``password`` when the server wants AUTH. ``folder_delimiter="+"`` delivers
to ``user+Folder@domain`` for a folder other than INBOX (Dovecot's
``lmtp_save_to_detail_mailbox``, Cyrus' plus-addressing); otherwise everything goes to
INBOX and a junk verdict is carried as ``X-Spam-Flag: YES`` / ``X-Spam: Yes``.

Every message gets ``X-PopAccounts-Id: <delivery id>`` in front (its bytes otherwise as
fetched). **Exactly once, with a read-back**: a mail server cannot be asked to accept
a message "unless it has it", so the fetch records an intent before each delivery and
the result after it (``idempotent = False``, :mod:`.records`). After a crash between
the server's 250 and that record, the message's intent is found open and
``read_back`` (:class:`ImapReadBack`: IMAP ``UID SEARCH HEADER X-PopAccounts-Id``)
says whether it arrived; only if not is it delivered again. A read-back that cannot
connect stops the fetch (transient) rather than deliver blindly. **Without a
read-back**, the message is delivered again: at most the one message that was in
flight at the crash may arrive twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from ...engine.delivery import (
    ID_HEADER,
    INBOX,
    DeliveryContext,
    DeliveryError,
    DeliveryItem,
    DeliveryRefused,
    DeliveryUnavailable,
    id_header,
)
from ...engine.errors import AuthenticationFailed, PopAccountsError
from ...engine.imapsearch import MailboxReader
from ...engine.lmtp import LMTPClient
from ...engine.types import AuthMethod, Credentials, NetPolicy, Security, ServerSpec

#: owner id, account id -> the platform address mail of that account is delivered to
RecipientFn = Callable[[str, int], str]
#: in front of a message the scanners called junk, when it cannot go to a Junk folder
JUNK_HEADERS = b"X-Spam-Flag: YES\r\nX-Spam: Yes\r\n"


def _net_for(net: NetPolicy, port: int, security: Security) -> NetPolicy:
    """The host's own server: any address, this port, plaintext only if chosen."""
    return dataclasses.replace(net, allow_private=True, allowed_ports=frozenset({port}),
                               allow_plaintext=security is Security.PLAIN)


class ImapReadBack:
    """Looks a delivered message up over IMAP by its ``X-PopAccounts-Id`` header.

    ``login(recipient) -> (username, password)``: how to sign in to the recipient's
    mailbox (a Dovecot master user, ``"alice@example.org*master"``, is the usual way).
    ``folders``: where a delivery may have put it (the delivered folder is added).
    """

    def __init__(self, host: str, port: int, *, login: Callable[[str], tuple[str, str]],
                 security: Security = Security.SSL, folders: Sequence[str] = (INBOX,)) -> None:
        self.host, self.port, self.security = host, port, security
        self.login = login
        self.folders = list(folders)

    def __call__(self, recipient: str, item: DeliveryItem, net: NetPolicy) -> bool:
        username, password = self.login(recipient)
        folders = [*self.folders, *([item.folder] if item.folder not in self.folders else [])]
        server = ServerSpec(self.host, self.port, self.security, username)
        try:
            with MailboxReader(server, password, _net_for(net, self.port, self.security)
                               ) as reader:
                return reader.has_header(folders, ID_HEADER, item.delivery_id)
        except AuthenticationFailed as exc:
            raise DeliveryRefused(detail=f"read-back: {exc.detail}") from None
        except PopAccountsError as exc:
            # Cannot tell now: stop rather than deliver blindly; tried again later.
            raise DeliveryUnavailable(detail=f"read-back: {exc.code} {exc.detail}") from None


ReadBack = Callable[[str, DeliveryItem, NetPolicy], "bool | None"]


class Lmtp:
    """The ``delivery`` hook for LMTP (see the module docstring)."""

    name = "lmtp"
    idempotent = False

    def __init__(self, host: str, port: int, *, recipient: RecipientFn,
                 security: Security = Security.STARTTLS, username: str | None = None,
                 password: str | None = None, read_back: ReadBack | None = None,
                 folder_delimiter: str | None = None,
                 local_hostname: str = "localhost") -> None:
        self.server = ServerSpec(host, port, security, username or "")
        self.creds = (Credentials(AuthMethod.PASSWORD, password)
                      if username and password is not None else None)
        self.recipient = recipient
        self.read_back = read_back
        self.folder_delimiter = folder_delimiter
        self.local_hostname = local_hostname

    def open(self, context: DeliveryContext) -> LmtpSession:
        return LmtpSession(self, context)


class LmtpSession:
    """One fetch session's LMTP connection (opened at the first delivery)."""

    def __init__(self, config: Lmtp, context: DeliveryContext) -> None:
        self.config = config
        self.context = context
        self.net = _net_for(context.net, config.server.port, config.server.security)
        self._client: LMTPClient | None = None
        self._address: str | None = None

    def _base(self) -> str:
        if self._address is None:
            self._address = self.config.recipient(self.context.owner_id,
                                                  self.context.account_id)
        return self._address

    def _recipient(self, item: DeliveryItem) -> str:
        address = self._base()
        delim = self.config.folder_delimiter
        if not delim or item.folder == INBOX or "@" not in address:
            return address
        local, _, domain = address.rpartition("@")
        return f"{local}{delim}{item.folder}@{domain}"

    def deliver(self, item: DeliveryItem) -> None:
        head = id_header(item.delivery_id)
        if item.junk and not self.config.folder_delimiter:
            head += JUNK_HEADERS
        if self._client is None:
            self._client = LMTPClient.session(self.config.server, self.config.creds,
                                              self.net,
                                              local_hostname=self.config.local_hostname)
        try:
            self._client.deliver(self._recipient(item), head, item.spool)
        except DeliveryError:
            self.close()  # the session may be out of step: a new one next time
            raise

    def find(self, item: DeliveryItem) -> bool | None:
        if self.config.read_back is None:
            return None
        return self.config.read_back(self._base(), item, self.net)

    def flush(self) -> None:
        pass  # a 250 to the data means the server took responsibility (RFC 2033)

    def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            client.quit_quietly()
