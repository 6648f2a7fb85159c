"""A real, scriptable POP3 server that misbehaves the ways Dovecot cannot.

``HostilePOP`` is a complete little POP3 server (RFC 1939 + CAPA, STLS, USER/PASS,
AUTH PLAIN, UIDL, LIST, TOP, RETR, DELE, RSET, NOOP, QUIT) over TLS from its own test
CA, with one mailbox that persists across sessions: DELEs are applied at QUIT, as a
real server does. Each misbehaviour seen in the wild is a field of :class:`Quirks`;
set them before (or between) sessions. Every command line the client sent is kept in
``commands`` (per session in ``sessions``) so tests can assert e.g. that no DELE was
sent.

Usage::

    with HostilePOP([(b"uid-1", raw1), (b"uid-2", raw2)]) as srv:
        srv.quirks.retr_error = {2: b"-ERR [SYS/TEMP] try later"}
        fetch(srv.server_spec(), srv.creds(), policy, ledger, sink, net=srv.net_policy())
        srv.messages   # what is left on the server, as (uidl, raw) pairs

The server's sleeps (``trickle_delay``) are server behaviour, not test synchronisation.
"""

from __future__ import annotations

import base64
import dataclasses
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import trustme

from flask_popaccounts.engine.types import (
    AuthMethod,
    Credentials,
    NetPolicy,
    Security,
    ServerSpec,
)
from tests.support.dovecot import free_port

USER = "hostile"
PASSWORD = "hostile-secret"


@dataclasses.dataclass
class Quirks:
    """What the server does wrong. All off by default (a correct server)."""

    #: line end the server uses for every line it writes (b"\n": an LF-only server)
    eol: bytes = b"\r\n"
    #: message numbers after whose RETR terminator an extra line is sent (framing bug)
    extra_line_after: dict[int, bytes] = dataclasses.field(default_factory=dict)
    #: message number -> the -ERR line RETR answers instead of the message
    retr_error: dict[int, bytes] = dataclasses.field(default_factory=dict)
    #: message number -> close the connection after this many bytes of its RETR body
    cut_in_message: dict[int, int] = dataclasses.field(default_factory=dict)
    #: seconds to sleep between each ``trickle_chunk`` bytes of every RETR body
    trickle_delay: float = 0.0
    trickle_chunk: int = 64
    #: CAPA announces "LOGIN-DELAY n"; logins sooner than n s after the last are refused
    login_delay: int | None = None
    #: DELE answered with this -ERR line (None: accepted)
    dele_error: bytes | None = None
    #: DELE and QUIT answered +OK, but the messages are kept
    dele_ignored: bool = False
    #: bytes sent in the same write as STLS's +OK (CVE-2021-39272 pattern)
    stls_inject: bytes = b""
    #: announce PIPELINING in CAPA
    pipelining: bool = True
    #: STAT/LIST/UIDL claim this many messages (lines generated lazily, no real bodies)
    fake_count: int | None = None
    #: message number -> the size LIST claims (a lying LIST)
    list_size: dict[int, int] = dataclasses.field(default_factory=dict)
    #: answer the greeting, then read commands and never answer them
    silent_after_greeting: bool = False
    #: after this many commands in a session, stop answering (None: never)
    silent_after_commands: int | None = None
    #: announce UIDL in CAPA and answer it (False: -ERR, a server without UIDL)
    uidl: bool = True
    #: send RETR bodies without byte-stuffing lines that begin with "." (a sloppy server)
    no_stuffing: bool = False
    #: RETR's +OK announces "n octets" (False: "+OK message follows", as some servers do)
    retr_octets: bool = True


class _Session:
    def __init__(self, server: HostilePOP, sock: socket.socket) -> None:
        self.srv = server
        self.sock: socket.socket = sock
        self.buf = b""
        self.commands: list[bytes] = []
        self.deleted: set[int] = set()
        self.authed = False
        self.user: str | None = None

    @property
    def q(self) -> Quirks:
        return self.srv.quirks

    # -- wire ---------------------------------------------------------------------
    def readline(self) -> bytes:
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        line = line.rstrip(b"\r")
        self.commands.append(line)
        self.srv.commands.append(line)
        return line

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self, text: bytes) -> None:
        self.send(text + self.q.eol)

    def multiline(self, lines: list[bytes]) -> None:
        out = [(b"." + ln if ln.startswith(b".") else ln) + self.q.eol for ln in lines]
        self.send(b"".join(out) + b"." + self.q.eol)

    # -- mailbox ------------------------------------------------------------------
    def count(self) -> int:
        return self.q.fake_count if self.q.fake_count is not None else len(self.srv.messages)

    def message(self, num: int) -> tuple[bytes, bytes] | None:
        if 1 <= num <= len(self.srv.messages) and num not in self.deleted:
            return self.srv.messages[num - 1]
        return None

    def size(self, num: int) -> int:
        if num in self.q.list_size:
            return self.q.list_size[num]
        msg = self.message(num)
        return len(msg[1]) if msg else 1000

    def uidl_of(self, num: int) -> bytes:
        msg = self.message(num)
        return msg[0] if msg else b"fake-%d" % num

    def listing(self, what: Callable[[int], bytes]) -> None:
        q = self.q
        if q.fake_count is not None:
            # Streamed in chunks: a huge listing must not need the memory of a list here.
            chunk: list[bytes] = []
            for n in range(1, q.fake_count + 1):
                chunk.append(b"%d %s%s" % (n, what(n), q.eol))
                if len(chunk) >= 10000:
                    self.send(b"".join(chunk))
                    chunk = []
            self.send(b"".join(chunk) + b"." + q.eol)
            return
        self.multiline([b"%d %s" % (n, what(n)) for n in range(1, self.count() + 1)
                        if n not in self.deleted])

    # -- commands -----------------------------------------------------------------
    def capa_lines(self) -> list[bytes]:
        lines = [b"TOP", b"USER", b"SASL PLAIN", b"RESP-CODES", b"AUTH-RESP-CODE"]
        if self.q.uidl:
            lines.append(b"UIDL")
        if self.q.pipelining:
            lines.append(b"PIPELINING")
        if self.q.login_delay is not None:
            lines.append(b"LOGIN-DELAY %d" % self.q.login_delay)
        if not isinstance(self.sock, ssl.SSLSocket):
            lines.append(b"STLS")
        return lines

    def run(self) -> None:
        self.line(b"+OK hostile POP3 ready")
        n_commands = 0
        while True:
            cmd = self.readline()
            n_commands += 1
            if self.q.silent_after_greeting or (
                self.q.silent_after_commands is not None
                and n_commands > self.q.silent_after_commands
            ):
                continue
            verb, _, arg = cmd.partition(b" ")
            handler = getattr(self, "do_" + verb.decode("ascii", "replace").lower(), None)
            if handler is None:
                self.line(b"-ERR unknown command")
                continue
            if handler(arg) is False:
                return

    def do_capa(self, arg: bytes) -> None:
        self.line(b"+OK capabilities follow")
        self.multiline(self.capa_lines())

    def do_stls(self, arg: bytes) -> None:
        self.send(b"+OK begin TLS" + self.q.eol + self.q.stls_inject)
        self.sock = self.srv.tls_context.wrap_socket(self.sock, server_side=True)
        self.buf = b""

    def _login_allowed(self) -> bool:
        delay = self.q.login_delay
        now = time.monotonic()
        last = self.srv.last_login
        if delay is not None and last is not None and now - last < delay:
            self.line(b"-ERR [LOGIN-DELAY] wait %d seconds between logins" % delay)
            return False
        return True

    def _authenticated(self, user: str, password: str) -> None:
        if user == self.srv.user and password == self.srv.password:
            if not self._login_allowed():
                return
            self.srv.last_login = time.monotonic()
            self.srv.logins += 1
            self.authed = True
            self.line(b"+OK logged in")
        else:
            self.line(b"-ERR [AUTH] invalid user name or password")

    def do_user(self, arg: bytes) -> None:
        self.user = arg.decode("utf-8", "replace")
        self.line(b"+OK")

    def do_pass(self, arg: bytes) -> None:
        self._authenticated(self.user or "", arg.decode("utf-8", "replace"))

    def do_auth(self, arg: bytes) -> None:
        mech, _, initial = arg.partition(b" ")
        if mech.upper() != b"PLAIN":
            self.line(b"-ERR unsupported mechanism")
            return
        if not initial:
            self.send(b"+ " + self.q.eol)
            initial = self.readline()
        try:
            _, user, password = base64.b64decode(initial).split(b"\0")
        except ValueError:
            self.line(b"-ERR bad response")
            return
        self._authenticated(user.decode(), password.decode())

    def _need_auth(self) -> bool:
        if not self.authed:
            self.line(b"-ERR not logged in")
        return not self.authed

    def do_stat(self, arg: bytes) -> None:
        if self._need_auth():
            return
        if self.q.fake_count is not None:  # no loop over millions of made-up messages
            self.line(b"+OK %d %d" % (self.q.fake_count, self.q.fake_count * 1000))
            return
        nums = [n for n in range(1, self.count() + 1) if n not in self.deleted]
        self.line(b"+OK %d %d" % (len(nums), sum(self.size(n) for n in nums)))

    def do_uidl(self, arg: bytes) -> None:
        if self._need_auth():
            return
        if not self.q.uidl:
            self.line(b"-ERR no UIDL here")
            return
        self.line(b"+OK unique-id listing follows")
        self.listing(self.uidl_of)

    def do_list(self, arg: bytes) -> None:
        if self._need_auth():
            return
        self.line(b"+OK scan listing follows")
        self.listing(lambda n: b"%d" % self.size(n))

    def _body_of(self, arg: bytes) -> tuple[int, bytes] | None:
        try:
            num = int(arg.split()[0])
        except (ValueError, IndexError):
            self.line(b"-ERR bad message number")
            return None
        msg = self.message(num)
        if msg is None:
            self.line(b"-ERR no such message")
            return None
        return num, msg[1]

    def do_top(self, arg: bytes) -> None:
        if self._need_auth() or (found := self._body_of(arg)) is None:
            return
        _, raw = found
        head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        self.line(b"+OK top of message follows")
        self.multiline([*head, b""])

    def do_retr(self, arg: bytes) -> bool | None:
        if self._need_auth() or (found := self._body_of(arg)) is None:
            return None
        num, raw = found
        if num in self.q.retr_error:
            self.line(self.q.retr_error[num])
            return None
        self.srv.retrieved.append(num)
        self.line(b"+OK %d octets" % len(raw) if self.q.retr_octets else b"+OK message follows")
        lines = raw.split(b"\r\n")
        if raw.endswith(b"\r\n"):
            lines = lines[:-1]
        eol = self.q.eol
        stuff = not self.q.no_stuffing
        body = b"".join((b"." + ln if stuff and ln.startswith(b".") else ln) + eol
                        for ln in lines)
        if num in self.q.cut_in_message:
            self.send(body[: self.q.cut_in_message[num]])
            return False  # the connection is dropped mid-message
        if self.q.trickle_delay:
            step = self.q.trickle_chunk
            for i in range(0, len(body), step):
                self.send(body[i : i + step])
                time.sleep(self.q.trickle_delay)
        else:
            self.send(body)
        self.send(b"." + eol + self.q.extra_line_after.get(num, b""))
        return None

    def do_dele(self, arg: bytes) -> None:
        if self._need_auth() or (found := self._body_of(arg)) is None:
            return
        if self.q.dele_error is not None:
            self.line(self.q.dele_error)
            return
        self.deleted.add(found[0])
        self.line(b"+OK marked for deletion")

    def do_rset(self, arg: bytes) -> None:
        self.deleted.clear()
        self.line(b"+OK")

    def do_noop(self, arg: bytes) -> None:
        self.line(b"+OK")

    def do_quit(self, arg: bytes) -> bool:
        if self.authed and self.deleted and not self.q.dele_ignored:
            with self.srv.lock:
                self.srv.messages = [m for i, m in enumerate(self.srv.messages, 1)
                                     if i not in self.deleted]
        self.line(b"+OK bye")
        return False


class HostilePOP:
    """One mailbox, one listening port (STLS), any number of sequential sessions."""

    def __init__(self, messages: list[tuple[bytes, bytes]] | None = None, *,
                 quirks: Quirks | None = None, user: str = USER,
                 password: str = PASSWORD, implicit_tls: bool = False) -> None:
        self.messages: list[tuple[bytes, bytes]] = list(messages or [])
        self.quirks = quirks or Quirks()
        self.user, self.password = user, password
        self.implicit_tls = implicit_tls
        self.commands: list[bytes] = []  #: every command line of every session
        self.sessions: list[list[bytes]] = []  #: command lines, per session
        self.retrieved: list[int] = []  #: message numbers whose RETR body was sent
        self.logins = 0
        self.last_login: float | None = None
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.ca = trustme.CA()
        self._tmp = Path(__import__("tempfile").mkdtemp(prefix="hostilepop-"))
        self.ca_file = str(self._tmp / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)
        self.tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("localhost", "127.0.0.1").configure_cert(self.tls_context)
        self.port = free_port()
        self._lsock = socket.create_server(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    # -- what the client needs ----------------------------------------------------
    def server_spec(self) -> ServerSpec:
        security = Security.SSL if self.implicit_tls else Security.STARTTLS
        return ServerSpec(host="127.0.0.1", port=self.port, security=security,
                          username=self.user)

    def creds(self) -> Credentials:
        return Credentials(AuthMethod.PASSWORD, self.password)

    def net_policy(self, **overrides: object) -> NetPolicy:
        fields: dict[str, object] = dict(
            allow_private=True, allowed_ports=frozenset({self.port}), ca_file=self.ca_file,
            connect_timeout=5, read_timeout=10)
        fields.update(overrides)
        return NetPolicy(**fields)  # type: ignore[arg-type]

    # -- serving ------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self._lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(sock,), daemon=True).start()

    def _handle(self, sock: socket.socket) -> None:
        if self.implicit_tls:
            try:
                sock = self.tls_context.wrap_socket(sock, server_side=True)
            except (OSError, ssl.SSLError):
                sock.close()
                return
        session = _Session(self, sock)
        self.sessions.append(session.commands)
        try:
            session.run()
        except (EOFError, OSError):
            pass
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)
        finally:
            try:
                session.sock.close()
            except OSError:
                pass

    def close(self) -> None:
        self._lsock.close()

    def __enter__(self) -> HostilePOP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
