"""The peers of the benchmark: getmail6, fetchmail (both from Debian) and a raw client.

getmail6 and fetchmail refuse to deliver as root, so they run as an ordinary system
user (``popbench`` by default, created when missing) with their own fresh state
directory per run. Each run is timed as a whole process (wall clock) and checked by
counting what was actually delivered.

The raw client (``python -m bench.peers raw '<json>'``) is the practical limit: TLS,
USER/PASS, UIDL, then every RETR pipelined in a window, each response read to its
terminating ``.CRLF`` and dropped. No parsing, no storing.
"""

from __future__ import annotations

import json
import os
import pwd
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import lmtp_dovecot

BENCH_USER = "popbench"

#: getmail6 6.18 sometimes stalls ~180 s in its per-message delivery fork (an upstream
#: race fixed in 6.19). A gap this long without a new delivery marks the run as hung
#: (healthy runs here never pause for more than about one second).
HANG_GAP = 15.0


def ensure_user(name: str = BENCH_USER) -> pwd.struct_passwd:
    """The unprivileged user the peers run as; created (system user, home dir) if missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    if os.geteuid() != 0:
        raise SystemExit(f"user {name!r} is missing and only root can create it")
    subprocess.run(
        ["useradd", "--system", "--create-home", "--home-dir", f"/home/{name}",
         "--shell", "/usr/sbin/nologin", name],
        check=True,
    )
    return pwd.getpwnam(name)


def _workdir(user: pwd.struct_passwd, prefix: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix=prefix))
    os.chown(d, user.pw_uid, user.pw_gid)
    return d


def _maildir(path: Path, user: pwd.struct_passwd) -> Path:
    for sub in ("", "tmp", "new", "cur"):
        p = path / sub
        p.mkdir(exist_ok=True)
        os.chown(p, user.pw_uid, user.pw_gid)
    return path


def _count_delivered(maildir: Path) -> int:
    """Messages in a Maildir (0 while the delivery agent has not created it yet)."""
    n = 0
    for sub in ("new", "cur"):
        try:
            n += len(os.listdir(maildir / sub))
        except FileNotFoundError:
            pass
    return n


def _run_as(
    user: pwd.struct_passwd, argv: list[str], cwd: Path, maildir: Path, expected: int,
    timeout: float,
) -> dict[str, Any]:
    """Run ``argv`` as ``user``; watch deliveries for stalls. Wall clock in seconds."""
    env = {"HOME": user.pw_dir, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "USER": user.pw_name}
    log = open(cwd / "output.log", "wb")
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, user=user.pw_uid, group=user.pw_gid, extra_groups=[],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    last_n, last_t, max_gap, hung = 0, t0, 0.0, False
    peak = 0
    while proc.poll() is None:
        time.sleep(0.1)
        peak = max(peak, _tree_peak_rss(proc.pid))
        now = time.perf_counter()
        n = _count_delivered(maildir)
        if n != last_n:
            last_n, last_t = n, now
        gap = now - last_t
        max_gap = max(max_gap, gap)
        if 0 < n < expected and gap > HANG_GAP:
            hung = True
            break
        if now - t0 > timeout:
            hung = True
            break
    stuck = ""
    if hung:
        # Evidence for the report: what the process tree was doing when it stalled.
        stuck = subprocess.run(
            ["ps", "-o", "pid,ppid,stat,etime,wchan:24,args", "--forest", "-g", str(proc.pid)],
            capture_output=True, text=True,
        ).stdout
        os.killpg(proc.pid, 9)
    proc.wait()
    secs = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    log.close()
    delivered = _count_delivered(maildir)
    tail = (cwd / "output.log").read_text(errors="replace")[-600:]
    return {
        "seconds": secs, "cpu": round(cpu, 3), "delivered": delivered,
        "peak_rss": peak or None,
        "returncode": proc.returncode,
        "hung": hung, "max_gap": round(max_gap, 2), "output_tail": tail, "stuck_ps": stuck,
        "last_delivery_after": round(last_t - t0, 3),
    }


def _tree_peak_rss(pid: int) -> int:
    """The largest ``VmHWM`` of ``pid`` and its children now, in bytes.

    Sampled while the peer runs (its own high-water mark only grows, so the last sample
    is within 0.1 s of its peak; a child living less than that can be missed). Not
    ``wait4``'s ``ru_maxrss``: Linux carries the forking parent's high-water mark
    across ``exec``, so it reported this benchmark's own size. A process still named
    like this one (forked, not yet exec'd) is skipped for the same reason.
    """
    mine = _status_field("self", "Name")
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    peak = 0
    for p in (str(pid), *kids):
        if _status_field(p, "Name") not in (None, mine):
            hwm = _status_field(p, "VmHWM")
            peak = max(peak, int(hwm.split()[0]) * 1024 if hwm else 0)
    return peak


def _status_field(pid: str, field: str) -> str | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def run_getmail(
    host: str, port: int, username: str, password: str, ca_file: str, expected: int,
    *, timeout: float = 900, user: pwd.struct_passwd | None = None,
) -> dict[str, Any]:
    """getmail6 with SimplePOP3SSLRetriever, read_all=false, leave on server, to a Maildir."""
    user = user or ensure_user()
    work = _workdir(user, "bench-getmail-")
    try:
        shutil.copy(ca_file, work / "ca.pem")
        maildir = _maildir(work / "Maildir", user)
        gmdir = work / "getmail"
        gmdir.mkdir()
        (gmdir / "getmailrc").write_text(
            "[retriever]\n"
            "type = SimplePOP3SSLRetriever\n"
            f"server = {host}\n"
            f"port = {port}\n"
            f"username = {username}\n"
            f"password = {password}\n"
            f"ca_certs = {work / 'ca.pem'}\n"
            "\n[destination]\n"
            "type = Maildir\n"
            f"path = {maildir}/\n"
            "\n[options]\n"
            "read_all = false\n"
            "delete = false\n"
            "verbose = 0\n"
            "message_log_syslog = false\n"
        )
        for p in [work / "ca.pem", gmdir, gmdir / "getmailrc"]:
            os.chown(p, user.pw_uid, user.pw_gid)
        os.chmod(gmdir / "getmailrc", 0o600)
        res = _run_as(
            user, ["getmail", f"--getmaildir={gmdir}", "--rcfile=getmailrc"],
            work, maildir, expected, timeout,
        )
        res["ok"] = res["delivered"] == expected and not res["hung"] and res["returncode"] == 0
        return res
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_fetchmail(
    host: str, port: int, username: str, password: str, ca_file: str, expected: int,
    *, timeout: float = 900, user: pwd.struct_passwd | None = None,
    lmtp: lmtp_dovecot.DovecotLMTP | None = None, recipient: str = "fmsink",
) -> dict[str, Any]:
    """fetchmail: ssl + sslcertck, fetchsizelimit 0, uidl + keep, delivering over LMTP.

    The LMTP server is ``lmtp`` when given (a running ``bench.lmtp_dovecot``, shared with
    our engine's LMTP runs; mail to ``recipient``, whose Maildir is left for the caller
    to check), else one of its own: Dovecot's (``bench.lmtp_dovecot``) when
    ``dovecot-lmtpd`` is installed, else the Python sink ``bench.lmtp_sink``; all write
    each message into a Maildir, so the delivered count is a count of files.
    """
    user = user or ensure_user()
    work = _workdir(user, "bench-fetchmail-")
    sink_root = Path(tempfile.mkdtemp(prefix="bench-lmtp-"))
    sink_root.chmod(0o755)
    py_sink = None
    dovecot_sink = None
    try:
        shutil.copy(ca_file, work / "ca.pem")
        if lmtp is not None:
            sock = lmtp.socket
            maildir = lmtp.maildir(recipient)
            sink_name = "dovecot-lmtp (shared)"
        elif lmtp_dovecot.available():
            dovecot_sink = lmtp_dovecot.DovecotLMTP(sink_root)
            dovecot_sink.start()
            sock = dovecot_sink.socket
            maildir = dovecot_sink.maildir(recipient)
            sink_name = "dovecot-lmtp"
        else:
            sock = sink_root / "lmtp.sock"
            maildir = sink_root / "Maildir"
            py_sink = subprocess.Popen(
                [sys.executable, "-m", "bench.lmtp_sink", "--socket", str(sock),
                 "--maildir", str(maildir)],
                cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE,
            )
            assert py_sink.stdout is not None
            if py_sink.stdout.readline().strip() != b"READY":
                raise RuntimeError("LMTP sink did not start")
            sink_name = "python-aiosmtpd-lmtp"
        rc = work / "fetchmailrc"
        rc.write_text(
            "set no syslog\n"
            "set no bouncemail\n"
            f"poll {host} with proto POP3 port {port} uidl\n"
            f'  user "{username}" there with password "{password}" is "{recipient}" here\n'
            f'  options ssl sslcertck sslcertfile "{work / "ca.pem"}" sslcommonname "localhost"\n'
            "  fetchsizelimit 0 keep\n"
            f'  lmtp smtphost "{sock}"\n'
        )
        for p in [work / "ca.pem", rc]:
            os.chown(p, user.pw_uid, user.pw_gid)
        os.chmod(rc, 0o600)
        res = _run_as(
            user,
            ["fetchmail", "-f", str(rc), "--idfile", str(work / "fetchids"),
             "--pidfile", str(work / "fetchmail.pid"), "--nodetach", "-d0", "--silent"],
            work, maildir, expected, timeout,
        )
        res["sink"] = sink_name
        if py_sink is not None:
            res["sink_cpu"] = _cpu_seconds(py_sink.pid)
        # exit 0: mail delivered; 1 would mean "no mail", which is a failure here
        res["ok"] = res["delivered"] == expected and not res["hung"] and res["returncode"] == 0
        return res
    finally:
        if py_sink is not None:
            py_sink.terminate()
            py_sink.wait(10)
        if dovecot_sink is not None:
            dovecot_sink.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(sink_root, ignore_errors=True)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the raw pipelined client -------------------------------------------------------------


class _Conn:
    def __init__(self, host: str, port: int, ca_file: str) -> None:
        ctx = ssl.create_default_context(cafile=ca_file)
        raw = socket.create_connection((host, port), timeout=60)
        self.sock = ctx.wrap_socket(raw, server_hostname=host)
        self.buf = bytearray()

    def fill(self) -> None:
        data = self.sock.recv(256 * 1024)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def line(self) -> bytes:
        while (i := self.buf.find(b"\r\n")) < 0:
            self.fill()
        out = bytes(self.buf[:i])
        del self.buf[: i + 2]
        return out

    def ok(self) -> bytes:
        line = self.line()
        if not line.startswith(b"+OK"):
            raise RuntimeError(f"server said {line[:80]!r}")
        return line

    def multiline_end(self) -> int:
        """Consume one multi-line body (after its status line); returns octets dropped."""
        start = 0
        while True:
            # The body starts right after the status line's CRLF, so an empty body is
            # just ".\r\n"; otherwise the terminator is CRLF "." CRLF.
            if self.buf[:3] == b".\r\n":
                del self.buf[:3]
                return 0
            i = self.buf.find(b"\r\n.\r\n", start)
            if i >= 0:
                del self.buf[: i + 5]
                return i + 2
            start = max(0, len(self.buf) - 4)
            self.fill()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


def raw_fetch(
    host: str, port: int, user: str, password: str, ca_file: str, window: int = 64
) -> dict[str, Any]:
    t0 = time.perf_counter()
    c0 = time.process_time()
    c = _Conn(host, port, ca_file)
    c.ok()
    c.send(f"USER {user}\r\n".encode())
    c.ok()
    c.send(f"PASS {password}\r\n".encode())
    c.ok()
    c.send(b"UIDL\r\n")
    c.ok()
    nums = []
    while (line := c.line()) != b".":
        nums.append(int(line.split()[0]))
    sent = got = octets = 0
    while got < len(nums):
        if sent < len(nums) and sent - got <= window // 2:  # refill the window in bursts
            burst = []
            while sent < len(nums) and sent - got < window:
                burst.append(f"RETR {nums[sent]}\r\n".encode())
                sent += 1
            c.send(b"".join(burst))
        c.ok()
        octets += c.multiline_end()
        got += 1
    c.send(b"QUIT\r\n")
    c.ok()
    c.sock.close()
    return {"seconds": time.perf_counter() - t0, "delivered": got, "octets": octets,
            "cpu": time.process_time() - c0}


def _vm_hwm() -> int:
    """This process's peak RSS (``VmHWM``), in bytes."""
    hwm = _status_field("self", "VmHWM")
    return int(hwm.split()[0]) * 1024 if hwm else 0


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["raw"]:
        raise SystemExit("usage: python -m bench.peers raw '<json job>'")
    job = json.loads(argv[1])
    res = raw_fetch(job["host"], job["port"], job["user"], job["password"], job["ca_file"],
                    job.get("window", 64))
    res["peak_rss"] = _vm_hwm()
    print("RESULT " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
