"""The POP3 wire protocol (RFC 1939, 2449, 2595, 5034), ours on purpose.

Why not :mod:`poplib`: it buffers every message whole in memory, caps lines at 2 KiB,
cannot pipeline, and verifies no certificate unless told. This client:

* reads through :class:`~.pop3wire.Wire`: bounded status/list lines (64 KiB), message
  bodies of any size and any line length streamed into a spool file, each handed over
  only once its terminating ``.CRLF`` line has arrived, so a dropped connection can
  never yield a truncated message;
* pipelines RETR and DELE when the server announces PIPELINING (a bounded window),
  lock-step otherwise;
* never puts a control character on a command line;
* maps RESP-CODES to the named errors, and keeps server text out of messages
  (it only goes, cleaned and truncated, into ``detail``);
* checks that answers stay in step with commands (:mod:`.pop3wire`, ``read_message``),
  raising :class:`~.errors.ProtocolOutOfStep` before any DELE is sent; bounds listings
  (:mod:`.pop3list`), asking STAT first so a huge mailbox is named before it is read.
"""

from __future__ import annotations

import base64
import socket
import ssl
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from typing import IO

from . import net as _net
from .errors import (
    AuthenticationFailed,
    BadServerAnswer,
    LoginDelay,
    ProtocolError,
    ProtocolOutOfStep,
    ServerUnavailable,
    TLSUnavailable,
    TokenRejected,
    UIDLUnsupported,
    clean_detail,
)
from .pop3list import UidlKeys, check_count, listing_lines, scan_listing, stat_answer
from .pop3wire import POP3Error, Wire, error_for_response, read_message
from .safety import check_fields
from .sasl import plain_response, xoauth2_response
from .types import AuthMethod, Credentials, NetPolicy, Refused, Security, ServerSpec

SPOOL_MEMORY = 1024 * 1024  #: messages larger than this spill to a temporary file
MAX_CAPA_LINES = 1000  #: longest CAPA answer we accept
PIPELINE_MAX_COMMANDS = 256  #: RETRs in flight at once
PIPELINE_MAX_BYTES = 8 * 1024 * 1024  #: LIST bytes in flight at once (at least one message)


class POP3Client:
    """One POP3 session over a connected socket.

    Use :meth:`open` to connect (checks, TLS, STLS), then :meth:`login`, then the
    commands. Every method raises named errors from :mod:`.errors`.
    """

    def __init__(self, sock: socket.socket, *, host: str, net: NetPolicy) -> None:
        self._wire = Wire(sock, net)
        self.host = host
        self.capabilities: frozenset[str] = frozenset()  #: capability names, upper-case
        self.sasl_mechanisms: frozenset[str] = frozenset()
        self.capa_supported = False
        self.greeting = b""
        self.uidl_nonconforming = 0  #: UIDLs outside RFC 1939's rule in the last listing
        self.uidl_duplicates = 0  #: messages whose UIDL an earlier one in the listing had
        self.login_delay: int | None = None  #: seconds between logins (CAPA LOGIN-DELAY)
        self._max_listing = net.max_listing
        self._stat_count: int | None = None  #: the count STAT gave this session, if asked

    @property
    def sock(self) -> socket.socket:
        """The connection's socket (an ``SSLSocket`` once TLS is on)."""
        return self._wire.sock

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted (implicit TLS, or after STLS)."""
        return isinstance(self._wire.sock, ssl.SSLSocket)

    # -- connecting -------------------------------------------------------------------
    @classmethod
    def open(cls, server: ServerSpec, net: NetPolicy) -> POP3Client:
        """Connect per ``server.security``, read the greeting, CAPA, STLS when asked."""
        check_fields(host=server.host, username=server.username)  # before any connection
        host = _net.check_target(server.host, server.port, server.security, net)
        sock = _net.open_connection(host, server.port, server.security, net)
        client = cls(sock, host=host, net=net)
        try:
            client.read_greeting()
            client.capa()
            if server.security is Security.STARTTLS:
                client.starttls()
        except BaseException:
            client.close()
            raise
        return client

    def read_greeting(self) -> None:
        line = self._wire.readline()
        if line.startswith(b"+OK"):
            self.greeting = line
            self._wire.check_idle("the greeting")
            return
        if line.startswith(b"-ERR"):
            raise error_for_response(line[4:], ServerUnavailable)
        raise ProtocolError("not a POP3 greeting", detail=line)

    def capa(self) -> frozenset[str]:
        """CAPA; remembers capability names and SASL mechanisms. Empty when unsupported."""
        try:
            lines = list(self._listing("CAPA", MAX_CAPA_LINES))
        except POP3Error:
            self.capa_supported = False
            self.capabilities = frozenset()
            self.sasl_mechanisms = frozenset()
            return self.capabilities
        names: set[str] = set()
        mechs: set[str] = set()
        for raw in lines:
            parts = raw.decode("ascii", "replace").split()
            if not parts:
                continue
            name = parts[0].upper()
            names.add(name)
            if name == "SASL":
                mechs.update(p.upper() for p in parts[1:])
            if name == "LOGIN-DELAY" and len(parts) > 1 and parts[1].isdigit():
                # RFC 2449: seconds between logins; exposed as "LOGIN-DELAY=n" too.
                self.login_delay = int(parts[1])
                names.add(f"LOGIN-DELAY={self.login_delay}")
        self.capa_supported = True
        self.capabilities = frozenset(names)
        self.sasl_mechanisms = frozenset(mechs)
        return self.capabilities

    def starttls(self) -> None:
        """STLS (RFC 2595), required: never continue in plaintext."""
        if "STLS" not in self.capabilities:
            raise TLSUnavailable("the server does not offer STLS")
        try:
            # Not checked for idleness here: bytes after this +OK are TLS injection,
            # which start_tls names as such.
            self._simple_command("STLS", check=False)
        except POP3Error as exc:
            raise TLSUnavailable("the server refused STLS", detail=exc.text) from None
        self._wire.start_tls(self.host)
        # Capabilities may differ once encrypted (RFC 2595 section 4): ask again.
        self.capa()

    # -- authentication ---------------------------------------------------------------
    def login(self, username: str, creds: Credentials) -> frozenset[str]:
        """Authenticate; returns the capabilities. Raises the named auth/busy errors."""
        check_fields(username=username, secret=creds.secret)
        try:
            if creds.method is AuthMethod.XOAUTH2:
                self._auth_xoauth2(username, creds.secret)
            elif not self.capa_supported or "USER" in self.capabilities:
                self._user_pass(username, creds.secret)
            elif "PLAIN" in self.sasl_mechanisms:
                self._auth_plain(username, creds.secret)
            else:
                self._user_pass(username, creds.secret)
        except LoginDelay as exc:
            exc.seconds = self.login_delay  # the refusal is temporary, never an auth failure
            raise
        self._wire.check_idle("logging in")
        return self.capabilities

    def _user_pass(self, username: str, secret: str) -> None:
        if self.pipelining:
            # One round trip instead of two (RFC 2449 PIPELINING); both answers are
            # still read in order, so a refused USER is reported as such.
            self._send_lines(["USER " + username, "PASS " + secret])
            answers = [self._wire.readline(), self._wire.readline()]
            for line in answers:
                if line.startswith(b"-ERR"):
                    raise error_for_response(line[4:], AuthenticationFailed)
                if not line.startswith(b"+OK"):
                    raise ProtocolOutOfStep("unexpected answer to USER/PASS", detail=line)
            return
        try:
            self._simple_command("USER " + username)
        except POP3Error as exc:
            raise error_for_response(exc.text, AuthenticationFailed) from None
        try:
            self._simple_command("PASS " + secret)
        except POP3Error as exc:
            raise error_for_response(exc.text, AuthenticationFailed) from None

    def _sasl(self, mechanism: str, payload: bytes, error: type[AuthenticationFailed]) -> None:
        """Two-step SASL: ``AUTH MECH``, ``+``, base64 payload (RFC 5034)."""
        self._send_line("AUTH " + mechanism)
        line = self._wire.readline()
        if line.startswith(b"-ERR"):
            raise error_for_response(line[4:], error)
        if not line.startswith(b"+"):
            raise ProtocolOutOfStep("unexpected answer to AUTH", detail=line)
        self._wire.send(base64.b64encode(payload) + b"\r\n")
        line = self._wire.readline()
        if line.startswith(b"+OK"):
            return
        if line.startswith(b"+"):
            # An error challenge (XOAUTH2 sends JSON here): answer with an empty line or
            # the session desyncs, then read the final -ERR.
            challenge = line
            self._wire.send(b"\r\n")
            line = self._wire.readline()
            if line.startswith(b"+OK"):
                return
            if not line.startswith(b"-ERR"):
                raise ProtocolOutOfStep("unexpected answer to AUTH", detail=line)
            err = error_for_response(line[4:], error)
            if not err.detail:
                err.detail = clean_detail(challenge)
            raise err
        if line.startswith(b"-ERR"):
            raise error_for_response(line[4:], error)
        raise ProtocolOutOfStep("unexpected answer to AUTH", detail=line)

    def _auth_plain(self, username: str, secret: str) -> None:
        self._sasl("PLAIN", plain_response(username, secret), AuthenticationFailed)

    def _auth_xoauth2(self, username: str, token: str) -> None:
        self._sasl("XOAUTH2", xoauth2_response(username, token), TokenRejected)

    # -- transaction state ------------------------------------------------------------
    def stat(self) -> tuple[int, int]:
        """STAT: (message count, octets)."""
        try:
            line = self._simple_command("STAT")
        except POP3Error as exc:
            raise error_for_response(exc.text, BadServerAnswer, "STAT failed") from None
        self._stat_count, size = stat_answer(line)
        return self._stat_count, size

    def uidl(self) -> dict[int, str]:
        """UIDL listing: message number -> the message's key. -ERR -> :class:`UIDLUnsupported`.

        The key is the UIDL itself when it is what RFC 1939 allows (1 to 70 characters
        in 0x21-0x7E). Anything else (longer, control or 8-bit characters, spaces) is
        keyed ``h:`` + the SHA-256 of its bytes, and the k-th message (k >= 2) listing a
        UIDL already listed is keyed ``h:`` + the SHA-256 of ``dup``, k and the UIDL, so
        every listed message has its own stable key of at most 66 characters and none is
        skipped (:class:`~.pop3list.UidlKeys`). ``uidl_nonconforming`` and
        ``uidl_duplicates`` count both cases.
        """
        # STAT first (in the same write when pipelining): a mailbox too large for this
        # site is named before a single listing line is read.
        sent = self._stat_count is None and self.pipelining
        if self._stat_count is not None:
            check_count(self._max_listing, self._stat_count, exact=True)
        elif self.pipelining:
            self._send_lines(["STAT", "UIDL"])
            try:
                count, _ = stat_answer(self._status_line("STAT"))
            except POP3Error as exc:
                raise error_for_response(exc.text, BadServerAnswer, "STAT failed") from None
            check_count(self._max_listing, count, exact=True)
        else:
            check_count(self._max_listing, self.stat()[0], exact=True)
        try:
            lines = self._listing("UIDL", self._max_listing, sent=sent)
        except POP3Error as exc:
            raise UIDLUnsupported(detail=exc.text) from None
        keys = UidlKeys.of(lines)
        self.uidl_nonconforming, self.uidl_duplicates = keys.nonconforming, keys.duplicates
        return keys.by_num

    def list_sizes(self) -> dict[int, int]:
        """LIST: message number -> size in octets."""
        try:
            lines = self._listing("LIST", self._max_listing)
        except POP3Error as exc:
            raise error_for_response(exc.text, BadServerAnswer, "LIST failed") from None
        return scan_listing(lines)

    @property
    def pipelining(self) -> bool:
        return "PIPELINING" in self.capabilities

    def retrieve(
        self, msgnums: Iterable[int], sizes: dict[int, int] | None = None
    ) -> Iterator[tuple[int, int, IO[bytes]] | Refused]:
        """RETR each message; yields ``(msgno, octets, spool)`` in order.

        The spool (positioned at 0) holds the message exactly as sent, dot-unstuffed,
        CRLF kept; it is closed when the generator resumes. A message is yielded only
        after its terminating line was read. A message the server answers with -ERR is
        yielded as :class:`~.types.Refused` in its place, and the session goes on.
        """
        sizes = sizes or {}
        pending = deque(msgnums)
        window = PIPELINE_MAX_COMMANDS if self.pipelining else 1
        byte_window = PIPELINE_MAX_BYTES if self.pipelining else 0
        inflight: deque[int] = deque()
        inflight_bytes = 0
        while pending or inflight:
            # Refill the window; commands are tiny, so sending them while the server is
            # still writing cannot deadlock on socket buffers.
            # Refill only once the window is half empty: one TLS record carries many
            # commands instead of one record (and one syscall) per message.
            batch: list[bytes] = []
            refill = len(inflight) <= window // 2
            while refill and pending and len(inflight) < window and (
                not inflight or inflight_bytes + sizes.get(pending[0], 0) <= byte_window
            ):
                n = pending.popleft()
                inflight.append(n)
                inflight_bytes += sizes.get(n, 0)
                batch.append(f"RETR {n}\r\n".encode("ascii"))
            if batch:
                self._wire.send(b"".join(batch))
            n = inflight.popleft()
            inflight_bytes -= sizes.get(n, 0)
            line = self._wire.readline()
            if line.startswith(b"-ERR"):
                text = line[4:].strip()
                yield Refused(n, clean_detail(text))
                continue
            spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
            try:
                octets = read_message(self._wire, line, sizes.get(n), spool,
                                      more=bool(inflight))
                yield n, octets, spool
            finally:
                spool.close()

    def dele(self, msgnums: Iterable[int]) -> list[int]:
        """DELE each message (pipelined when possible); returns those the server accepted."""
        nums = list(msgnums)
        accepted: list[int] = []
        window = PIPELINE_MAX_COMMANDS if self.pipelining else 1
        for start in range(0, len(nums), window):
            chunk = nums[start : start + window]
            self._wire.send(b"".join(f"DELE {n}\r\n".encode("ascii") for n in chunk))
            for n in chunk:
                line = self._wire.readline()
                if line.startswith(b"+OK"):
                    accepted.append(n)
                elif not line.startswith(b"-ERR"):
                    raise ProtocolOutOfStep("unexpected answer to DELE", detail=line)
            self._wire.check_idle("DELE")
        return accepted

    def quit(self) -> None:
        """QUIT: the server commits DELEs only when this returns normally."""
        try:
            self._simple_command("QUIT")
        except POP3Error as exc:
            # RFC 1939: -ERR to QUIT means some deletions could not be done.
            raise error_for_response(exc.text, ServerUnavailable, "QUIT failed") from None
        self.close()

    def close(self) -> None:
        """Drop the connection without QUIT (the server then undoes DELEs)."""
        self._wire.close()

    # -- commands ---------------------------------------------------------------------
    def _send_line(self, line: str) -> None:
        self._send_lines([line])

    def _send_lines(self, lines: list[str]) -> None:
        """Send commands in one write (pipelined when more than one)."""
        # login() checked the user's input already; this guards every other path.
        for line in lines:
            check_fields(command=line)
        self._wire.send(b"".join(line.encode("utf-8") + b"\r\n" for line in lines))

    def _status_line(self, command: str) -> bytes:
        """The answer to ``command`` (already sent): text after +OK; POP3Error on -ERR."""
        resp = self._wire.readline()
        if resp.startswith(b"+OK"):
            return resp[3:].strip()
        if resp.startswith(b"-ERR"):
            raise POP3Error(resp[4:].strip())
        raise ProtocolOutOfStep(f"unexpected answer to {command}", detail=resp)

    def _simple_command(self, line: str, *, check: bool = True) -> bytes:
        """Send one command; return the text after +OK, raise POP3Error on -ERR."""
        self._send_line(line)
        verb = line.split(" ", 1)[0]
        text = self._status_line(verb)
        if check:
            self._wire.check_idle(verb)
        return text

    def _listing(self, line: str, cap: int, *, sent: bool = False) -> Iterator[bytes]:
        """Send ``line`` (unless ``sent``), read its +OK now; its lines come lazily."""
        verb = line.split(" ", 1)[0]
        if not sent:
            self._send_line(line)
        self._status_line(verb)
        return listing_lines(self._wire, verb, cap)
