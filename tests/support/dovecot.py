"""A private Dovecot POP3 server for tests: real TLS, real auth, real Maildir.

One :class:`Dovecot` instance is one Dovecot master process with its own ``base_dir``
under a temporary directory, listening on loopback addresses only, on free ports.

Listeners (all on the same two ports, told apart by loopback address)::

    address      certificate                          use
    127.0.0.1    trustme CA, "localhost"+"127.0.0.1"  the good server (STLS on pop3_port,
                                                      implicit TLS on pop3s_port)
    127.0.0.2    trusted CA, issued for another name  wrong host name      (BAD_CERT_HOSTS)
    127.0.0.3    trusted CA, expired                  expired certificate
    127.0.0.4    self-signed                          self-signed certificate
    127.0.0.5    another, untrusted CA                untrusted authority
    127.0.0.6    no TLS at all (ssl = no)             STLS not offered

Usage::

    with Dovecot() as dc:                      # or the session fixture ``dovecot``
        dc.add_user("alice", "alice-secret")
        dc.deliver("alice", b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
        dc.pop3s_port, dc.pop3_port, dc.ca_file, dc.log_path
        dc.server_messages("alice")            # what is still on the server (bytes)

Users live in passwd-files (one per user); each user's Maildir is ``root/mail/<user>/Maildir`` owned
by ``nobody`` (Dovecot refuses to run mail processes as root). Mail is seeded by
writing files straight into ``Maildir/new``, which is what a local delivery agent does.

``pop3_lock_session = yes`` by default, so a second concurrent login gets
``-ERR [IN-USE]`` (after Dovecot's ~11 s lock wait); pass ``lock_session=False`` for
an instance where concurrent sessions are allowed.

For OAuth2 (XOAUTH2/OAUTHBEARER) pass ``oauth2_introspection_url``: an ``oauth2``
passdb is added that POSTs ``token=...`` to that URL (``http://client:secret@host:port/path``).
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

GOOD_HOST = "127.0.0.1"
#: case name -> loopback address whose certificate is bad in that way
BAD_CERT_HOSTS: dict[str, str] = {
    "wrong_host": "127.0.0.2",
    "expired": "127.0.0.3",
    "self_signed": "127.0.0.4",
    "untrusted": "127.0.0.5",
}
NO_TLS_HOST = "127.0.0.6"
MAIL_UID = 65534  # nobody
MAIL_GID = 65534  # nogroup


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host`` (and, in practice, on all of 127/8)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _self_signed(ip: str) -> tuple[bytes, bytes]:
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)])
    now = _dt.datetime.now(_dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(days=1))
        .not_valid_after(now + _dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem



def stop_master(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a foreground Dovecot master: SIGTERM, then its whole process group."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


class Dovecot:
    """A running private Dovecot; see the module docstring for the listener map."""

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        lock_session: bool = True,
        oauth2_introspection_url: str | None = None,
        extra_config: str = "",
        start: bool = True,
    ) -> None:
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="dovecot-test-"))
        self.root.chmod(0o755)
        self.lock_session = lock_session
        self.oauth2_introspection_url = oauth2_introspection_url
        self.extra_config = extra_config
        self.host = GOOD_HOST
        self.pop3_port = free_port()  #: 110-style: STLS offered
        self.pop3s_port = free_port()  #: 995-style: implicit TLS
        self.log_path = self.root / "dovecot.log"
        self.conf_path = self.root / "dovecot.conf"
        self.users_path = self.root / "users"
        self._users: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self.ca = trustme.CA()
        self.ca_file = str(self.root / "ca.pem")  #: trust this to accept the good server
        self.ca.cert_pem.write_to_path(self.ca_file)
        self._write_certs()
        if start:
            self.start()

    # -- setup ------------------------------------------------------------------------
    def _write_certs(self) -> None:
        certs = self.root / "certs"
        certs.mkdir(exist_ok=True)

        def save(name: str, leaf: trustme.LeafCert) -> None:
            leaf.private_key_pem.write_to_path(str(certs / f"{name}.key"))
            (certs / f"{name}.crt").write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))

        save("good", self.ca.issue_cert("localhost", GOOD_HOST))
        save("wrong_host", self.ca.issue_cert("mail.other.example"))
        now = _dt.datetime.now(_dt.UTC)
        save(
            "expired",
            self.ca.issue_cert(
                BAD_CERT_HOSTS["expired"],
                not_before=now - _dt.timedelta(days=60),
                not_after=now - _dt.timedelta(days=30),
            ),
        )
        save("untrusted", trustme.CA().issue_cert(BAD_CERT_HOSTS["untrusted"]))
        crt, key = _self_signed(BAD_CERT_HOSTS["self_signed"])
        (certs / "self_signed.crt").write_bytes(crt)
        (certs / "self_signed.key").write_bytes(key)
        for p in certs.iterdir():
            p.chmod(0o644)

    def _config(self) -> str:
        r = self.root
        addrs = ", ".join([GOOD_HOST, *BAD_CERT_HOSTS.values(), NO_TLS_HOST])
        locals_ = "".join(
            f"local {ip} {{\n  ssl_cert = <{r}/certs/{name}.crt\n"
            f"  ssl_key = <{r}/certs/{name}.key\n}}\n"
            for name, ip in BAD_CERT_HOSTS.items()
        )
        oauth = ""
        mechs = "plain login"
        if self.oauth2_introspection_url:
            (r / "dovecot-oauth2.conf.ext").write_text(
                "introspection_mode = post\n"
                f"introspection_url = {self.oauth2_introspection_url}\n"
                "force_introspection = yes\n"
                "username_attribute = username\n"
                "active_attribute = active\n"
                "active_value = true\n"
            )
            oauth = (
                "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                f"  args = {r}/dovecot-oauth2.conf.ext\n}}\n"
            )
            mechs += " xoauth2 oauthbearer"
        return f"""\
protocols = pop3
listen = {addrs}
base_dir = {r}/run
state_dir = {r}/state
instance_name = poptest-{uuid.uuid4().hex[:8]}
log_path = {self.log_path}
ssl = yes
ssl_cert = <{r}/certs/good.crt
ssl_key = <{r}/certs/good.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
# No tarpit for failed logins in tests (default: 2 s, plus a growing per-IP penalty).
auth_failure_delay = 0
auth_mechanisms = {mechs}
mail_location = maildir:{r}/mail/%u/Maildir
login_trusted_networks =
service pop3-login {{
  inet_listener pop3 {{
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = {self.pop3s_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
protocol pop3 {{
  pop3_lock_session = {"yes" if self.lock_session else "no"}
}}
{locals_}local {NO_TLS_HOST} {{
  ssl = no
}}
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {self.users_path}/%u
}}
{oauth}userdb {{
  driver = static
  args = uid={MAIL_UID} gid={MAIL_GID} home={r}/mail/%u
}}
{self.extra_config}
"""

    def start(self) -> None:
        """Write the config and start Dovecot in the foreground; wait until it listens."""
        self._write_users()
        self.conf_path.write_text(self._config())
        (self.root / "mail").mkdir(exist_ok=True)
        os.chown(self.root / "mail", MAIL_UID, MAIL_GID)
        self._proc = subprocess.Popen(
            ["dovecot", "-F", "-c", str(self.conf_path)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "dovecot.stderr", "wb"),
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    "dovecot exited: "
                    + (self.root / "dovecot.stderr").read_text(errors="replace")
                    + (self.log_path.read_text(errors="replace") if self.log_path.exists() else "")
                )
            try:
                with socket.create_connection((GOOD_HOST, self.pop3s_port), timeout=1):
                    pass
                with socket.create_connection((NO_TLS_HOST, self.pop3_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("dovecot did not start listening in 15 s")

    def stop(self) -> None:
        """Stop Dovecot (and its children) and remove the directory if we created it."""
        stop_master(self._proc)
        self._proc = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- users ------------------------------------------------------------------------
    def _write_users(self) -> None:
        # One passwd-file per user (``users/<name>``): Dovecot re-checks a passwd-file
        # at most once per second, so a single shared file would miss a user added in
        # the same second as the previous login; a new path is always read fresh.
        self.users_path.mkdir(exist_ok=True)
        self.users_path.chmod(0o755)
        for user, password in self._users.items():
            tmp = self.users_path / f".{user}.tmp"
            tmp.write_text(f"{user}:{{PLAIN}}{password}::::::\n")
            tmp.chmod(0o644)
            os.replace(tmp, self.users_path / user)

    def add_user(self, user: str, password: str) -> None:
        """Create (or reset the password of) a user with an empty Maildir."""
        if any(c in user for c in ":/\n\r\t ") or any(c in password for c in ":\n\r"):
            raise ValueError("user/password not representable in a passwd-file")
        self._users[user] = password
        self._write_users()
        md = self.maildir(user)
        for sub in ("new", "cur", "tmp"):
            (md / sub).mkdir(parents=True, exist_ok=True)
        for p in [md.parent, md, *(md / s for s in ("new", "cur", "tmp"))]:
            os.chown(p, MAIL_UID, MAIL_GID)

    def set_password(self, user: str, password: str) -> None:
        """Change a user's password; returns once Dovecot will see it (about 1 s)."""
        if user not in self._users:
            raise KeyError(user)
        self.add_user(user, password)
        # Dovecot stats a passwd-file at most once per second (see _write_users).
        time.sleep(1.1)

    # -- mail -------------------------------------------------------------------------
    def maildir(self, user: str) -> Path:
        return self.root / "mail" / user / "Maildir"

    def deliver(self, user: str, raw: bytes) -> str:
        """Put one message into the user's ``Maildir/new`` (atomically); returns its file name.

        The bytes are kept as given; use CRLF line ends so what POP3 hands out is
        byte-identical to what was delivered.
        """
        md = self.maildir(user)
        name = f"{time.time_ns()}.{uuid.uuid4().hex}.poptest"
        tmp = md / "tmp" / name
        tmp.write_bytes(raw)
        os.chown(tmp, MAIL_UID, MAIL_GID)
        os.rename(tmp, md / "new" / name)
        return name

    def deliver_many(self, user: str, messages: list[bytes]) -> None:
        """Deliver several messages, in order (file names sort in delivery order)."""
        for raw in messages:
            self.deliver(user, raw)

    def server_messages(self, user: str) -> list[bytes]:
        """The raw contents of every message the server still has for ``user``."""
        md = self.maildir(user)
        out = []
        for sub in ("new", "cur"):
            d = md / sub
            if d.exists():
                for p in sorted(d.iterdir()):
                    try:
                        out.append(p.read_bytes())
                    except FileNotFoundError:  # expunged while we looked
                        pass
        return out

    def clear(self, user: str) -> None:
        """Remove every message and Dovecot's index/UID state for ``user``.

        The next session sees an empty mailbox with a new UIDVALIDITY, so any UIDLs
        issued afterwards differ from the earlier ones.
        """
        md = self.maildir(user)
        for sub in ("new", "cur", "tmp"):
            for p in (md / sub).iterdir():
                p.unlink(missing_ok=True)  # (a session may be expunging it right now)
        self.reset_uidls(user)

    def reset_uidls(self, user: str) -> None:
        """Throw away Dovecot's UID list and indexes: every UIDL changes (a "rebuilt mailbox")."""
        md = self.maildir(user)
        for p in md.iterdir():
            if p.name.startswith("dovecot"):
                # A session that just said QUIT may still drop its lock file meanwhile.
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
        # UIDVALIDITY is derived from the clock; make sure the new one differs.
        time.sleep(1.05)

    def log(self) -> str:
        """Dovecot's log so far (for assertion messages)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
