"""LMTP (RFC 2033) into the host's own mail server: Dovecot, Cyrus, Postfix's virtual.

One connection per fetch session, one transaction per message with one recipient. The
connection is :class:`~.smtp.SMTPClient`'s (the safe connect of :mod:`.net`, TLS done
and verified by us, never by smtplib; STARTTLS required unless the host chose implicit
TLS or plain; AUTH when the host gives credentials), greeting with LHLO instead of EHLO.

The message is streamed from its spool, never read whole: with CHUNKING in one
``BDAT n LAST`` (the bytes as they are), otherwise DATA, dot-stuffed line by line.
``MAIL`` and ``RCPT`` go in one round trip when the server offers PIPELINING.

The envelope sender is null (``MAIL FROM:<>``): the message was delivered once already,
at the user's outside provider; a bounce or an automatic answer from the platform must
never go back to its sender.

Replies, and what they mean for the fetch (:mod:`.delivery`'s errors): LMTP answers the
data once per accepted recipient (RFC 2033 §4.2), here once. 2xx: delivered. 4xx (or
an enhanced x.2.2, "mailbox full"): :class:`~.delivery.DeliveryUnavailable`, transient,
nothing delivered. 5xx: :class:`~.delivery.DeliveryRefused`. A connection lost after
the data went out and before its reply: ``DeliveryUnavailable(maybe_delivered=True)``,
since the server may have saved it (the case a read-back settles).
"""

from __future__ import annotations

import smtplib
from typing import IO

from .addresses import check_addr_spec
from .delivery import DeliveryError, DeliveryRefused, DeliveryUnavailable, PlatformFull
from .errors import (
    ConnectionFailed,
    PopAccountsError,
    ProtocolError,
    ServerBusy,
    TokenRejected,
)
from .smtp import SMTPClient
from .types import Credentials, NetPolicy, ServerSpec

#: Bytes per send while streaming a message.
SEND_CHUNK = 64 * 1024


def _text(resp: bytes | str) -> str:
    return resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)


def error_for(code: int, resp: bytes | str, stage: str, *,
              maybe_delivered: bool = False) -> DeliveryError:
    """The delivery error for an LMTP reply that is not 2xx (or a lost connection: 0)."""
    detail = f"lmtp {stage}: {code} {_text(resp)}".strip()
    words = _text(resp).split()
    if words and words[0] in ("4.2.2", "5.2.2"):  # the recipient's mailbox is full
        return PlatformFull(detail=detail)
    if 500 <= code < 600:
        return DeliveryRefused(detail=detail)
    return DeliveryUnavailable(detail=detail, maybe_delivered=maybe_delivered)


class LMTPClient(SMTPClient):
    """An LMTP session; :meth:`session`, then :meth:`deliver` per message."""

    ehlo_msg = "lhlo"

    @classmethod
    def session(cls, server: ServerSpec, creds: Credentials | None, net: NetPolicy, *,
                local_hostname: str = "localhost") -> LMTPClient:
        """Connect, LHLO, STARTTLS per ``server.security``, AUTH when ``creds``.

        A server that cannot be reached or answers 4xx: DeliveryUnavailable. One whose
        certificate, TLS or sign-in fails: DeliveryRefused (the host's settings).
        """
        try:
            client = cls.open(server, net, local_hostname=local_hostname)
        except DeliveryError:
            raise
        except (ConnectionFailed, ProtocolError, ServerBusy) as exc:
            raise DeliveryUnavailable(detail=f"lmtp connect: {exc.code} {exc.detail}") from None
        except PopAccountsError as exc:
            raise DeliveryRefused(detail=f"lmtp connect: {exc.code} {exc.detail}") from None
        assert isinstance(client, LMTPClient)
        if creds is None:
            return client
        try:
            client.authenticate(server.username, creds)
        except BaseException as exc:
            client.close()
            if isinstance(exc, (ConnectionFailed, ServerBusy)) and not isinstance(
                    exc, TokenRejected):
                raise DeliveryUnavailable(detail=f"lmtp auth: {exc.code} {exc.detail}") from None
            if isinstance(exc, PopAccountsError):
                raise DeliveryRefused(detail=f"lmtp auth: {exc.code} {exc.detail}") from None
            raise
        return client

    def _reply(self, stage: str, *, maybe_delivered: bool = False) -> tuple[int, bytes]:
        try:
            code, resp = self.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryUnavailable(detail=f"lmtp {stage}: {exc}",
                                      maybe_delivered=maybe_delivered) from None
        return code, resp

    def _send_raw(self, data: bytes | bytearray, stage: str, *,
                  maybe_delivered: bool = False) -> None:
        try:
            assert self.sock is not None
            self.sock.sendall(data)
        except OSError as exc:
            raise DeliveryUnavailable(detail=f"lmtp {stage}: {exc}",
                                      maybe_delivered=maybe_delivered) from None

    def deliver(self, recipient: str, head: bytes, spool: IO[bytes]) -> str:
        """One message to ``recipient``: ``head`` (our header lines) then the spool's
        bytes as they are. Returns the server's reply text (its queue id)."""
        try:
            rcpt = check_addr_spec(recipient)
        except PopAccountsError:
            raise DeliveryRefused(detail="lmtp rcpt: the host's recipient is not an "
                                         "address") from None
        lines = [b"MAIL FROM:<>\r\n", f"RCPT TO:<{rcpt}>\r\n".encode("ascii")]
        if self.has_extn("pipelining"):
            self._send_raw(b"".join(lines), "mail")
            replies = [self._reply("mail"), self._reply("rcpt")]
        else:
            replies = []
            for line, stage in zip(lines, ("mail", "rcpt"), strict=True):
                self._send_raw(line, stage)
                replies.append(self._reply(stage))
                if replies[-1][0] // 100 != 2:
                    break
        for (code, resp), stage in zip(replies, ("mail", "rcpt"), strict=False):
            if code // 100 != 2:
                self._reset()
                raise error_for(code, resp, stage)
        if self.has_extn("chunking"):
            self._bdat(head, spool)
        else:
            self._data(head, spool)
        # From here on the server may have the message even when no reply arrives.
        code, resp = self._reply("data", maybe_delivered=True)
        if code // 100 != 2:
            raise error_for(code, resp, "data")
        return _text(resp)

    def _bdat(self, head: bytes, spool: IO[bytes]) -> None:
        spool.seek(0, 2)
        total = len(head) + spool.tell()
        spool.seek(0)
        self._send_raw(f"BDAT {total} LAST\r\n".encode("ascii") + head, "data")
        sent = len(head)
        while chunk := spool.read(SEND_CHUNK):
            self._send_raw(chunk, "data", maybe_delivered=True)
            sent += len(chunk)
        if sent != total:  # pragma: no cover - the spool changed under us
            raise DeliveryUnavailable(detail="lmtp data: the spool changed while sent",
                                      maybe_delivered=True)

    def _data(self, head: bytes, spool: IO[bytes]) -> None:
        self._send_raw(b"DATA\r\n", "data")
        code, resp = self._reply("data")
        if code != 354:
            self._reset()
            raise error_for(code, resp, "data")
        buf = bytearray(head)
        at_line_start = True
        while line := spool.readline(SEND_CHUNK):
            if at_line_start and line.startswith(b"."):
                buf += b"."  # dot-stuffing (RFC 5321 §4.5.2)
            buf += line
            at_line_start = line.endswith(b"\n")
            if len(buf) >= SEND_CHUNK:
                self._send_raw(buf, "data", maybe_delivered=True)
                buf.clear()
        if not at_line_start:
            buf += b"\r\n"
        buf += b".\r\n"
        self._send_raw(buf, "data", maybe_delivered=True)

    def _reset(self) -> None:
        """RSET after a refused step, so the session stays usable (errors ignored)."""
        try:
            self._send_raw(b"RSET\r\n", "rset")
            self._reply("rset")
        except DeliveryError:
            pass
