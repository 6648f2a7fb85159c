"""Trusted servers: exact (address, port) pairs a host allows though they are private.

What the narrow allowance must keep true: the pair itself connects (on its own port,
with its own CA), and nothing else gains from it: not the same address on another
port, not another private address on that port, not a name that also resolves
elsewhere, and the pair's CA vouches for no other server.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from flask_popaccounts.config import DEFAULTS, net_policy, trusted_servers
from flask_popaccounts.engine import NetPolicy, Security
from flask_popaccounts.engine import errors as E
from flask_popaccounts.engine.net import check_target, open_connection, resolve

PORT = 19995


def _policy(**kw: object) -> NetPolicy:
    base: dict[str, object] = {"trusted_servers": frozenset({("127.0.0.1", PORT)}),
                               "connect_timeout": 5.0, "read_timeout": 5.0}
    base.update(kw)
    return NetPolicy(**base)  # type: ignore[arg-type]


def _answers(monkeypatch: pytest.MonkeyPatch, *addresses: str) -> None:
    """Make every name resolve to ``addresses`` (what a hostile DNS could answer)."""
    def fake(host: str, port: int, *args: object, **kw: object) -> list[tuple]:  # type: ignore[type-arg]
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM,
                 socket.IPPROTO_TCP, "", (a, port)) for a in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", fake)


def test_the_pair_is_allowed_on_its_own_port() -> None:
    net = _policy()
    assert check_target("127.0.0.1", PORT, Security.STARTTLS, net) == "127.0.0.1"
    assert resolve("127.0.0.1", PORT, net) == [(socket.AF_INET, ("127.0.0.1", PORT))]


def test_the_same_address_on_another_port_is_refused() -> None:
    with pytest.raises(E.AddressNotAllowed):
        resolve("127.0.0.1", 995, _policy())
    with pytest.raises(E.PortNotAllowed):  # neither allowed nor a trusted pair's port
        check_target("127.0.0.1", PORT + 1, Security.STARTTLS, _policy())


def test_another_private_address_on_the_trusted_port_is_refused() -> None:
    for other in ("127.0.0.2", "10.0.0.5", "::1", "169.254.169.254"):
        with pytest.raises(E.AddressNotAllowed):
            resolve(other, PORT, _policy())


def test_a_public_address_gains_no_port_from_the_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    _answers(monkeypatch, "93.184.216.34")
    with pytest.raises(E.PortNotAllowed):
        resolve("pop.example.org", PORT, _policy())
    assert resolve("pop.example.org", 995, _policy())[0][1] == ("93.184.216.34", 995)


def test_the_pair_is_matched_on_every_resolved_address(monkeypatch: pytest.MonkeyPatch) -> None:
    # A name is judged by what it resolves to, once: resolving to the trusted address
    # alone is that server; resolving to it and to another private one is hostile.
    _answers(monkeypatch, "127.0.0.1")
    assert resolve("demo.example.org", PORT, _policy())[0][1] == ("127.0.0.1", PORT)
    _answers(monkeypatch, "127.0.0.1", "10.0.0.5")
    with pytest.raises(E.AddressNotAllowed):
        resolve("rebind.example.org", PORT, _policy())


def test_config_pairs_are_normalised_and_bad_ones_refused() -> None:
    assert trusted_servers([("127.0.0.1", "19995"), ["::1", 19995], "[0:0::1]:110",
                            "10.0.0.2:995"]) == frozenset({
        ("127.0.0.1", 19995), ("::1", 19995), ("::1", 110), ("10.0.0.2", 995)})
    for bad in (["localhost:995"], [("pop.example.org", 995)], ["127.0.0.1"],
                [("127.0.0.1", 0)], [("127.0.0.1", "x")]):
        with pytest.raises(ValueError, match="POPACCOUNTS_TRUSTED_SERVERS"):
            trusted_servers(bad)
    cfg = dict(DEFAULTS, POPACCOUNTS_TRUSTED_SERVERS=["127.0.0.1:19995"],
               POPACCOUNTS_TRUSTED_SERVERS_CA_FILE="/x/ca.pem")
    net = net_policy(cfg)
    assert net.trusted_servers == {("127.0.0.1", 19995)} and not net.allow_private
    assert net.trusted_ca_file == "/x/ca.pem" and net.allowed_ports == {110, 995}


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """A TLS listener on loopback with a certificate from its own CA: (port, CA file)."""
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    lsock = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"+OK\r\n")
            except (OSError, ssl.SSLError):
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield lsock.getsockname()[1], str(ca_file)
    finally:
        lsock.close()


def test_the_pairs_ca_is_trusted_for_the_pair_only(tls_server: tuple[int, str]) -> None:
    port, ca_file = tls_server
    trusted = _policy(trusted_servers=frozenset({("127.0.0.1", port)}),
                      trusted_ca_file=ca_file)
    with open_connection("127.0.0.1", port, Security.SSL, trusted) as sock:
        assert isinstance(sock, ssl.SSLSocket)
    # The same server reached as "any private host" (not a trusted pair) is not vouched
    # for by that CA: a demo's CA can never sign for another server.
    other = _policy(allow_private=True, allowed_ports=frozenset({port}),
                    trusted_ca_file=ca_file)
    with pytest.raises(E.CertificateInvalid):
        open_connection("127.0.0.1", port, Security.SSL, other)
