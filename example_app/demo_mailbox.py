"""A demo mailbox on this machine, so ``make demo`` shows the whole job by itself.

Beside the example webmail, ``make demo`` starts a small but real POP3 server (STLS,
USER/PASS and SASL PLAIN, UIDL, LIST, TOP, RETR, DELE, PIPELINING) and an SMTP
submission server (STARTTLS + AUTH, aiosmtpd) on loopback, both with a certificate
from a CA made for this run, holding a few hundred sample messages in Arabic and
English. Mail submitted to the demo address (a send-as confirmation code, a reply to
yourself) lands back in the demo mailbox, so a newcomer sees fetching, sending and
confirmation without any outside account.

It is part of the example application, never of the package: the extension's own
defaults (no private hosts, certificates verified) are untouched, and the example
app trusts exactly these two (address, port) pairs and this run's CA for them
(:func:`config`: ``POPACCOUNTS_TRUSTED_SERVERS``), offers the mailbox in the wizard
(``POPACCOUNTS_EXTRA_PROVIDERS``) and sends confirmation codes through its SMTP server.

The sample messages keep their UIDLs from run to run (``demo-000001``...), so a webmail
that fetched them once does not fetch them again after a restart; mail that arrives by
SMTP gets a UIDL of its own run.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import random
import secrets
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask_babel import lazy_gettext

DEMO_HOST = "127.0.0.1"
#: ``.example`` (RFC 2606) resolves nowhere and, unlike ``.test``, is an address domain
#: that email-validator (the account form) accepts.
DEMO_ADDRESS = "demo@mail.demo.example"
DEMO_USER = "demo"
DEMO_MESSAGES = 300
#: Where ``make demo`` listens when it can (an account added in one run works in the
#: next); a busy port falls back to a free one.
DEMO_POP3_PORT = 19995
DEMO_SMTP_PORT = 19587
DEMO_LABEL = "Demo mailbox (this machine)"


# -- TLS: a CA for this run, and the servers' certificate ------------------------------
def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def make_tls(directory: Path) -> tuple[ssl.SSLContext, str]:
    """A fresh CA (written to ``directory/demo-ca.pem``) and a server context it signs."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("flask-popaccounts demo CA"))
          .issuer_name(_name("flask-popaccounts demo CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(DEMO_HOST))]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    ca_file = directory / "demo-ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain, key_file = directory / "demo-server.pem", directory / "demo-server.key"
    chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM)
                      + ca.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(chain), str(key_file))
    return ctx, str(ca_file)


# -- sample mail ---------------------------------------------------------------------
_SENDERS = [
    ("ليلى الحسن", "layla@example.org"), ("Omar Farouk", "omar@example.com"),
    ("مكتب التسجيل", "registrar@university.example"), ("Sara Haddad", "sara@example.net"),
    ("Newsletter", "news@shop.example"), ("يوسف القاسم", "yousef@example.org"),
]
_TOPICS = [
    ("اجتماع الفريق يوم الأحد", "نلتقي في الساعة العاشرة صباحًا في قاعة الاجتماعات."),
    ("Invoice for November", "Please find the invoice details below. Thank you."),
    ("تهنئة بمناسبة النجاح", "ألف مبروك! نتمنى لك دوام التوفيق."),
    ("Flight itinerary changed", "Your flight now departs at 14:35 from gate B12."),
    ("جدول الامتحانات النهائية", "مرفق جدول الامتحانات للفصل الدراسي الأول."),
    ("Weekend plans?", "Are you free on Saturday for a walk by the sea?"),
    ("تذكير: تجديد الاشتراك", "ينتهي اشتراكك خلال سبعة أيام."),
    ("Photos from the trip", "Here are a few of the photos we took."),
]


def sample_messages(count: int = DEMO_MESSAGES, *, now: dt.datetime | None = None,
                    seed: int = 2026) -> list[bytes]:
    """``count`` messages, Arabic and English, sent over the last months (oldest first).

    Deterministic for a seed (dates relative to ``now``); CRLF line ends, as on the wire.
    """
    rng = random.Random(seed)
    now = now or dt.datetime.now(dt.UTC)
    out = []
    for i in range(count):
        name, addr = rng.choice(_SENDERS)
        subject, body = rng.choice(_TOPICS)
        sent = now - dt.timedelta(hours=(count - i) * 7, minutes=rng.randrange(60))
        msg = EmailMessage(policy=SMTP)
        msg["From"] = f"{name} <{addr}>"
        msg["To"] = DEMO_ADDRESS
        msg["Subject"] = f"{subject} ({i + 1})"
        msg["Date"] = format_datetime(sent)
        msg["Message-ID"] = make_msgid(f"demo{i}", domain="mail.demo.example")
        msg.set_content(f"{body}\n\n— {name}\n")
        if i % 25 == 0:
            msg.add_attachment(b"demo attachment %d\n" % i, maintype="text",
                               subtype="plain", filename=f"notes-{i + 1}.txt")
        out.append(msg.as_bytes())
    return out


# -- the POP3 server -----------------------------------------------------------------
@dataclass
class Mailbox:
    """One user's messages, shared by the POP3 and SMTP servers (deletions at QUIT)."""

    user: str
    password: str
    messages: list[tuple[str, bytes]] = field(default_factory=list)  #: (uidl, raw)
    lock: threading.Lock = field(default_factory=threading.Lock)
    run: str = field(default_factory=lambda: secrets.token_hex(4))  #: this run, in UIDLs
    _next: int = 0

    def add(self, raw: bytes, uidl: str | None = None) -> None:
        """Add a message; without ``uidl`` it gets one that no other run gives."""
        with self.lock:
            self._next += 1
            self.messages.append((uidl or f"in-{self.run}-{self._next:06d}", raw))

    def snapshot(self) -> list[tuple[str, bytes]]:
        with self.lock:
            return list(self.messages)

    def remove(self, uidls: set[str]) -> None:
        with self.lock:
            self.messages = [m for m in self.messages if m[0] not in uidls]


class POP3Session:
    """One connection: RFC 1939 with CAPA, STLS (RFC 2595), SASL PLAIN and PIPELINING."""

    def __init__(self, sock: socket.socket, mailbox: Mailbox, tls: ssl.SSLContext) -> None:
        self.sock: socket.socket = sock
        self.mailbox, self.tls = mailbox, tls
        self.buf = b""
        self.view: list[tuple[str, bytes]] = []  #: the mailbox as this session sees it
        self.deleted: set[int] = set()
        self.authed = False
        self.user = ""

    def readline(self) -> bytes:
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data or len(self.buf) > 8192:
                raise EOFError
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def reply(self, text: bytes, lines: list[bytes] | None = None) -> None:
        out = text + b"\r\n"
        if lines is not None:
            out += b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines)
            out += b".\r\n"
        self.sock.sendall(out)

    def run(self) -> None:
        self.reply(b"+OK demo POP3 server ready")
        while True:
            verb, _, arg = self.readline().partition(b" ")
            handler: Callable[[bytes], bool | None] | None = getattr(
                self, "do_" + verb.decode("ascii", "replace").lower(), None)
            if handler is None:
                self.reply(b"-ERR unknown command")
            elif not self.authed and verb.upper() not in (
                    b"CAPA", b"STLS", b"USER", b"PASS", b"AUTH", b"QUIT"):
                self.reply(b"-ERR log in first")
            elif handler(arg) is False:
                return

    def do_capa(self, arg: bytes) -> None:
        caps = [b"TOP", b"UIDL", b"USER", b"SASL PLAIN", b"RESP-CODES", b"PIPELINING"]
        if not isinstance(self.sock, ssl.SSLSocket):
            caps.append(b"STLS")
        self.reply(b"+OK capability list follows", caps)

    def do_stls(self, arg: bytes) -> None:
        if isinstance(self.sock, ssl.SSLSocket):
            self.reply(b"-ERR already encrypted")
            return
        self.reply(b"+OK begin TLS")
        self.sock = self.tls.wrap_socket(self.sock, server_side=True)
        self.buf = b""

    def _login(self, user: str, password: str) -> None:
        if not isinstance(self.sock, ssl.SSLSocket):
            self.reply(b"-ERR [AUTH] encrypt first (STLS)")
        elif user == self.mailbox.user and password == self.mailbox.password:
            self.authed, self.view = True, self.mailbox.snapshot()
            self.reply(b"+OK logged in")
        else:
            self.reply(b"-ERR [AUTH] wrong user name or password")

    def do_user(self, arg: bytes) -> None:
        self.user = arg.decode("utf-8", "replace")
        self.reply(b"+OK")

    def do_pass(self, arg: bytes) -> None:
        self._login(self.user, arg.decode("utf-8", "replace"))

    def do_auth(self, arg: bytes) -> None:
        mech, _, initial = arg.partition(b" ")
        if mech.upper() != b"PLAIN":
            self.reply(b"-ERR only PLAIN")
            return
        if not initial:
            self.sock.sendall(b"+ \r\n")
            initial = self.readline()
        try:
            _, user, password = base64.b64decode(initial, validate=True).split(b"\0")
            self._login(user.decode(), password.decode())
        except ValueError:
            self.reply(b"-ERR malformed PLAIN response")

    def _live(self) -> list[int]:
        return [n for n in range(1, len(self.view) + 1) if n not in self.deleted]

    def _num(self, arg: bytes) -> int | None:
        try:
            n = int(arg.split()[0])
        except (ValueError, IndexError):
            n = 0
        if n in self._live():
            return n
        self.reply(b"-ERR no such message")
        return None

    def do_stat(self, arg: bytes) -> None:
        live = self._live()
        self.reply(b"+OK %d %d" % (len(live), sum(len(self.view[n - 1][1]) for n in live)))

    def do_uidl(self, arg: bytes) -> None:
        self.reply(b"+OK", [b"%d %s" % (n, self.view[n - 1][0].encode()) for n in self._live()])

    def do_list(self, arg: bytes) -> None:
        self.reply(b"+OK", [b"%d %d" % (n, len(self.view[n - 1][1])) for n in self._live()])

    def do_top(self, arg: bytes) -> None:
        if (n := self._num(arg)) is not None:
            head = self.view[n - 1][1].split(b"\r\n\r\n", 1)[0]
            self.reply(b"+OK", [*head.split(b"\r\n"), b""])

    def do_retr(self, arg: bytes) -> None:
        if (n := self._num(arg)) is not None:
            raw = self.view[n - 1][1]
            self.reply(b"+OK %d octets" % len(raw), raw.removesuffix(b"\r\n").split(b"\r\n"))

    def do_dele(self, arg: bytes) -> None:
        if (n := self._num(arg)) is not None:
            self.deleted.add(n)
            self.reply(b"+OK deleted")

    def do_rset(self, arg: bytes) -> None:
        self.deleted.clear()
        self.reply(b"+OK")

    def do_noop(self, arg: bytes) -> None:
        self.reply(b"+OK")

    def do_quit(self, arg: bytes) -> bool:
        if self.authed and self.deleted:
            self.mailbox.remove({self.view[n - 1][0] for n in self.deleted})
        self.reply(b"+OK bye")
        return False


class POP3Server:
    """Accepts connections on loopback, one thread per session."""

    def __init__(self, mailbox: Mailbox, tls: ssl.SSLContext, port: int = 0) -> None:
        self.mailbox, self.tls = mailbox, tls
        try:
            self._lsock = socket.create_server((DEMO_HOST, port))
        except OSError:  # busy: any free port (the caller prints which)
            self._lsock = socket.create_server((DEMO_HOST, 0))
        self.port: int = self._lsock.getsockname()[1]
        threading.Thread(target=self._serve, name="demo-pop3", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self._lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(sock,), daemon=True).start()

    def _session(self, sock: socket.socket) -> None:
        sock.settimeout(300)
        session = POP3Session(sock, self.mailbox, self.tls)
        try:
            session.run()
        except (EOFError, OSError, ssl.SSLError):
            pass
        finally:
            session.sock.close()

    def close(self) -> None:
        try:  # wakes the accept() of the serving thread: close() alone leaves it listening
            self._lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._lsock.close()


# -- the SMTP server -----------------------------------------------------------------
class _Handler:
    """Mail to the demo address lands in its mailbox; anything else is only counted."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.elsewhere: list[bytes] = []  #: mail for other recipients (not delivered)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        if any(rcpt.lower() == DEMO_ADDRESS for rcpt in envelope.rcpt_tos):
            self.mailbox.add(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        else:
            self.elsewhere.append(raw)
        return "250 OK"


def _free(port: int) -> int:
    """``port`` if nothing listens there now, else a free one (aiosmtpd needs a number)."""
    for wanted in ((port, 0) if port else (0,)):
        try:
            with socket.create_server((DEMO_HOST, wanted)) as probe:
                return int(probe.getsockname()[1])
        except OSError:
            continue
    raise OSError("no free port on loopback")


def _smtp_server(mailbox: Mailbox, tls: ssl.SSLContext, port: int = 0) -> Any:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                     data: Any) -> AuthResult:
        ok = (isinstance(data, LoginPassword) and data.login.decode() == mailbox.user
              and data.password.decode() == mailbox.password)
        return AuthResult(success=ok)

    handler = _Handler(mailbox)
    controller = Controller(handler, hostname=DEMO_HOST, port=_free(port), tls_context=tls,
                            require_starttls=True, auth_require_tls=True,
                            authenticator=authenticate, server_hostname="localhost")
    controller.start()
    return controller


@dataclass
class DemoMailbox:
    """The running demo servers: where they listen and how to sign in."""

    mailbox: Mailbox
    pop3: POP3Server
    smtp: Any
    ca_file: str
    address: str = DEMO_ADDRESS

    @property
    def pop3_port(self) -> int:
        return self.pop3.port

    @property
    def smtp_port(self) -> int:
        return int(self.smtp.port)

    def stop(self) -> None:
        self.pop3.close()
        self.smtp.stop()


def start(directory: Path, *, password: str, count: int = DEMO_MESSAGES, pop3_port: int = 0,
          smtp_port: int = 0) -> DemoMailbox:
    """Start both servers with ``count`` sample messages; TLS files go to ``directory``.

    Ports 0 (the default) are free ones; a given port that is busy becomes a free one.
    """
    tls, ca_file = make_tls(directory)
    mailbox = Mailbox(DEMO_USER, password)
    for i, raw in enumerate(sample_messages(count), 1):
        mailbox.add(raw, f"demo-{i:06d}")
    pop3 = POP3Server(mailbox, tls, pop3_port)
    try:
        smtp = _smtp_server(mailbox, tls, smtp_port)
    except BaseException:
        pop3.close()
        raise
    return DemoMailbox(mailbox, pop3, smtp, ca_file)


def config(demo: DemoMailbox) -> dict[str, Any]:
    """The example app's settings for the running demo: its two servers trusted (and
    nothing else private), its CA for them only, a wizard tile that fills in everything,
    and confirmation codes sent through its SMTP server (so they land in the mailbox)."""
    pairs = [(DEMO_HOST, demo.pop3_port), (DEMO_HOST, demo.smtp_port)]
    return {
        "POPACCOUNTS_TRUSTED_SERVERS": pairs,
        "POPACCOUNTS_TRUSTED_SERVERS_CA_FILE": demo.ca_file,
        "POPACCOUNTS_EXTRA_PROVIDERS": {"demo": {
            # the host's own words, in its catalogue (translated when the wizard shows them)
            "label": lazy_gettext("Demo mailbox (this machine)"),
            "description": lazy_gettext(
                "%(num)s sample messages in Arabic and English on a POP3 server that runs "
                "beside this webmail; mail sent to its address comes back to it.",
                num=DEMO_MESSAGES),
            "pop_host": DEMO_HOST, "pop_port": demo.pop3_port, "pop_security": "starttls",
            "pop_username": demo.mailbox.user, "password": demo.mailbox.password,
            "email": demo.address, "name": lazy_gettext("Demo mailbox"),
        }},
        "POPACCOUNTS_SYSTEM_SMTP_HOST": DEMO_HOST,
        "POPACCOUNTS_SYSTEM_SMTP_PORT": demo.smtp_port,
        "POPACCOUNTS_SYSTEM_SMTP_SECURITY": "starttls",
        "POPACCOUNTS_SYSTEM_SMTP_USERNAME": demo.mailbox.user,
        "POPACCOUNTS_SYSTEM_SMTP_PASSWORD": demo.mailbox.password,
        "POPACCOUNTS_SYSTEM_SMTP_FROM": "Example webmail <no-reply@mail.demo.example>",
        "POPACCOUNTS_SYSTEM_SMTP_CA_FILE": demo.ca_file,
        "POPACCOUNTS_SITE_NAME": "the example webmail",
    }
