"""Safe connect: resolve once, refuse non-public targets, verify TLS against the host name.

The user types a host name; a hostile one could point at the cloud metadata service,
the database next door or loopback (SSRF). So the name is resolved exactly once,
every address it resolves to must be public (unless the host application allows
private targets), and the socket connects to that checked address, never re-resolving
(no DNS-rebinding window). TLS is then verified against the *name* the user gave.

A host may also trust exact ``(address, port)`` pairs (``NetPolicy.trusted_servers``:
a demo mailbox on loopback, an on-premise server): such a pair is allowed though not
public and on its own port, and its CA (``trusted_ca_file``) is trusted on connections
to it only. The pair is matched on each resolved address, the one connected to, so a
name cannot borrow the trust by resolving to a trusted address and another one.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import threading
from collections.abc import Iterable

from .errors import (
    AddressNotAllowed,
    CertificateInvalid,
    ConnectionFailed,
    ConnectionTimeout,
    InvalidInput,
    PlaintextNotAllowed,
    PortNotAllowed,
    ProtocolError,
)
from .safety import check_fields
from .types import NetPolicy, Security

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_SIXTOFOUR = ipaddress.IPv6Network("2002::/16")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_V4_COMPAT = ipaddress.IPv6Network("::/96")
_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_V4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")


def check_host(host: str) -> str:
    """Validate a user-given host name or IP literal; returns it without brackets."""
    check_fields(host=host)
    h = host.strip()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if not h or len(h) > 253 or any(ch.isspace() or ch in "/\\@?#" for ch in h):
        raise InvalidInput("host is not a valid host name")
    return h


def _v4_is_public(ip: ipaddress.IPv4Address) -> bool:
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or ip in _CGNAT
        or not ip.is_global
    )


def is_public_address(ip: IPAddress) -> bool:
    """Whether ``ip`` is a public unicast address (and, for IPv6, embeds no private IPv4).

    IPv6 forms that carry an IPv4 address (IPv4-mapped, IPv4-compatible, SIIT,
    6to4, NAT64) are judged by the IPv4 address they lead to; Teredo is always
    refused (its embedded addresses are obfuscated and it is never a mail server).
    """
    if isinstance(ip, ipaddress.IPv4Address):
        return _v4_is_public(ip)
    if ip.scope_id:
        return False
    if ip in _TEREDO or ip in _NAT64_LOCAL:
        return False
    for net in (_V4_MAPPED, _V4_TRANSLATED, _NAT64, _V4_COMPAT):
        if ip in net:
            # ``::`` and ``::1`` live in ::/96 too; they are refused by this path as
            # 0.0.0.0 and 0.0.0.1.
            return _v4_is_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip in _SIXTOFOUR:
        embedded = ip.sixtofour
        return embedded is not None and _v4_is_public(embedded)
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_site_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def _ip(addr: str) -> IPAddress:
    return ipaddress.ip_address(addr.split("%", 1)[0])


def is_trusted(ip: IPAddress, port: int, net: NetPolicy) -> bool:
    """Whether ``ip``:``port`` is one of the host's trusted servers (exact pair)."""
    return (str(ip), int(port)) in net.trusted_servers


def resolve(host: str, port: int, net: NetPolicy) -> list[tuple[int, tuple[str, int]]]:
    """Resolve ``host`` once; return ``(family, sockaddr)`` candidates, all checked.

    Raises :class:`AddressNotAllowed` when any address is not public (and private
    targets are not allowed) and is not a trusted pair with ``port``: a name that
    resolves to both kinds is treated as hostile. A port outside ``allowed_ports`` is
    allowed only for trusted pairs (:class:`PortNotAllowed` for any other address).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConnectionFailed("the host name could not be resolved", detail=str(exc)) from None
    out: list[tuple[int, tuple[str, int]]] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        addr = str(sockaddr[0])
        ip = _ip(addr)
        if is_trusted(ip, port, net):
            pass
        elif not net.allow_private and not is_public_address(ip):
            raise AddressNotAllowed(detail=f"{host} -> {ip}")
        elif port not in net.allowed_ports:
            raise PortNotAllowed(detail=f"{port} ({host} -> {ip})")
        item = (family, (addr, port))
        if item not in out:
            out.append(item)
    if not out:
        raise ConnectionFailed("the host name has no usable address", detail=host)
    return out


def check_target(host: str, port: int, security: Security, net: NetPolicy) -> str:
    """Everything that can be refused before a packet leaves; returns the clean host.

    A port outside ``allowed_ports`` passes here only when a trusted pair has it;
    :func:`resolve` then allows it for that pair's address alone.
    """
    h = check_host(host)
    if port not in net.allowed_ports and all(port != p for _, p in net.trusted_servers):
        raise PortNotAllowed(detail=str(port))
    if security is Security.PLAIN and not net.allow_plaintext:
        raise PlaintextNotAllowed()
    return h


_contexts: dict[tuple[tuple[str, int], ...], ssl.SSLContext] = {}
_contexts_lock = threading.Lock()


def tls_context(net: NetPolicy, *, trusted: bool = False) -> ssl.SSLContext:
    """System trust store + the configured extra CA; host names checked; TLS 1.2 or newer.

    ``trusted`` (a connection to one of ``net.trusted_servers``) adds
    ``net.trusted_ca_file``, which no other connection trusts.

    Built once per set of CA files (and rebuilt when one changes): loading the system
    trust store costs ~50 ms of CPU, which dominated an idle poll. An SSLContext is safe
    to share between threads; each connection gets its own SSL object from it.
    """
    files = [f for f in (net.ca_file, net.trusted_ca_file if trusted else None) if f]
    key = tuple((f, os.stat(f).st_mtime_ns) for f in files)
    with _contexts_lock:
        ctx = _contexts.get(key)
        if ctx is None:
            ctx = _contexts[key] = _new_tls_context(files)
    return ctx


def _new_tls_context(ca_files: list[str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    for ca_file in ca_files:
        ctx.load_verify_locations(cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def connect_tcp(candidates: Iterable[tuple[int, tuple[str, int]]], net: NetPolicy) -> socket.socket:
    """Connect to the first reachable checked address (with the connect timeout)."""
    last: BaseException | None = None
    for family, sockaddr in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(net.connect_timeout)
            if net.source_address is not None:
                sock.bind(net.source_address)
            sock.connect(sockaddr)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(net.read_timeout)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    if isinstance(last, TimeoutError):
        raise ConnectionTimeout("connecting timed out", detail=str(last))
    raise ConnectionFailed(detail=str(last) if last else None)


def _peer_trusted(sock: socket.socket, net: NetPolicy) -> bool:
    """Whether ``sock`` is connected to a trusted pair (whose own CA then applies)."""
    if not net.trusted_servers or not net.trusted_ca_file:
        return False
    try:
        peer = sock.getpeername()
    except OSError:
        return False
    return is_trusted(_ip(str(peer[0])), int(peer[1]), net)


def wrap_tls(sock: socket.socket, server_hostname: str, net: NetPolicy, *,
             starttls: bool = False, port: int | None = None) -> ssl.SSLSocket:
    """TLS handshake over ``sock``, verified against ``server_hostname``.

    The handshake has the connect timeout; afterwards every read has the read timeout.
    On failure the socket is closed. ``starttls`` (after STLS / STARTTLS) and ``port``
    choose the words of a certificate error: no advice about port 995 on a STARTTLS port.
    """
    ctx = tls_context(net, trusted=_peer_trusted(sock, net))
    try:
        sock.settimeout(net.connect_timeout)
        tls = ctx.wrap_socket(sock, server_hostname=server_hostname, do_handshake_on_connect=False)
        tls.do_handshake()
        tls.settimeout(net.read_timeout)
        return tls
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        err = CertificateInvalid(detail=exc.verify_message or str(exc))
        err.help = CertificateInvalid.help_for("starttls" if starttls else "ssl", port)
        raise err from None
    except TimeoutError as exc:
        sock.close()
        raise ConnectionTimeout("the TLS handshake timed out", detail=str(exc)) from None
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
        sock.close()
        raise ConnectionFailed("the connection closed during the TLS handshake",
                               detail=str(exc)) from None
    except ssl.SSLError as exc:
        # e.g. "wrong version number": not a TLS server on this port.
        sock.close()
        raise ProtocolError("the TLS handshake failed", detail=str(exc)) from None
    except OSError as exc:
        sock.close()
        raise ConnectionFailed("the connection closed during the TLS handshake",
                               detail=str(exc)) from None


def open_connection(host: str, port: int, security: Security, net: NetPolicy) -> socket.socket:
    """Check, resolve once, connect to the checked address; TLS from the start for SSL.

    For STARTTLS and PLAIN the returned socket is plain TCP (the POP3 layer upgrades).
    """
    h = check_target(host, port, security, net)
    candidates = resolve(h, port, net)
    sock = connect_tcp(candidates, net)
    if security is Security.SSL:
        return wrap_tls(sock, h, net, port=port)
    return sock
