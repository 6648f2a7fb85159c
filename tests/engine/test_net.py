"""Address classification and input checks (pure), plus resolution of real names."""

from __future__ import annotations

import ipaddress

import pytest

from flask_popaccounts.engine import NetPolicy, Security
from flask_popaccounts.engine import errors as E
from flask_popaccounts.engine.net import (
    check_host,
    check_target,
    is_public_address,
    resolve,
)
from flask_popaccounts.engine.safety import check_fields, has_control_chars

NOT_PUBLIC = [
    "127.0.0.1", "127.1.2.3", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
    "169.254.169.254", "169.254.0.1", "100.64.0.1", "100.127.255.254", "0.0.0.0",  # noqa: S104
    "255.255.255.255", "224.0.0.1", "239.1.1.1", "240.0.0.1", "192.0.2.1", "198.18.0.1",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "fec0::1", "2001:db8::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1",
    "::ffff:0:10.0.0.1", "2002:7f00:1::1", "2002:a00:1::", "2002:a9fe:a9fe::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001::1", "64:ff9b::7f00:1", "64:ff9b::a00:1",
    "64:ff9b::a9fe:a9fe", "64:ff9b:1::1",
]
PUBLIC = [
    "8.8.8.8", "1.1.1.1", "93.184.216.34", "100.63.255.255", "100.128.0.1", "172.32.0.1",
    "2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8", "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize("addr", NOT_PUBLIC)
def test_not_public(addr: str) -> None:
    assert not is_public_address(ipaddress.ip_address(addr))


@pytest.mark.parametrize("addr", PUBLIC)
def test_public(addr: str) -> None:
    assert is_public_address(ipaddress.ip_address(addr))


@pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\x00", "\x1b[0m", "a\x7f", "a\u2028b", "\x85"])
def test_control_characters(value: str) -> None:
    assert has_control_chars(value)
    with pytest.raises(E.InvalidInput):
        check_fields(username=value)


def test_ordinary_text_passes() -> None:
    check_fields(username="user@example.org", secret="pä$$ wörd ١٢٣", host="mail.example.org")
    assert check_host("[::1]") == "::1"
    for bad in ["", "a b", "host/x", "user@host", "x" * 300]:
        with pytest.raises(E.InvalidInput):
            check_host(bad)


def test_policy_checks_before_any_packet() -> None:
    with pytest.raises(E.PortNotAllowed):
        check_target("pop.example.org", 25, Security.SSL, NetPolicy())
    with pytest.raises(E.PlaintextNotAllowed):
        check_target("pop.example.org", 110, Security.PLAIN, NetPolicy())
    assert check_target("pop.example.org", 110, Security.STARTTLS, NetPolicy()) == \
        "pop.example.org"


def test_resolve_refuses_loopback_names_unless_allowed() -> None:
    with pytest.raises(E.AddressNotAllowed):
        resolve("localhost", 995, NetPolicy())
    assert resolve("127.0.0.1", 995, NetPolicy(allow_private=True))[0][1] == ("127.0.0.1", 995)


def test_unresolvable_name_is_connection_failed() -> None:
    with pytest.raises(E.ConnectionFailed):
        resolve("no-such-host.invalid", 995, NetPolicy())
