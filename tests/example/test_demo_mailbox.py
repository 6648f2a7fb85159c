"""The demo mailbox ``make demo`` starts: a real POP3 + SMTP pair the engine talks to.

What a newcomer relies on: every sample message arrives byte for byte over verified
TLS, deletions happen at QUIT, and mail sent to the demo address comes back by POP3.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from example_app import demo_mailbox
from flask_popaccounts.engine import (
    AuthMethod,
    Credentials,
    DeletePolicy,
    NetPolicy,
    RetrievalPolicy,
    Security,
    ServerSpec,
    fetch,
    smtp,
)
from flask_popaccounts.engine import errors as E
from tests.support.sqlite_store import SqliteStore


@pytest.fixture
def demo(tmp_path: Path):  # type: ignore[no-untyped-def]
    running = demo_mailbox.start(tmp_path / "tls", password="demo-pass", count=40)
    try:
        yield running
    finally:
        running.stop()


def _net(demo: demo_mailbox.DemoMailbox) -> NetPolicy:
    return NetPolicy(allow_private=True, ca_file=demo.ca_file,
                     allowed_ports=frozenset({demo.pop3_port, demo.smtp_port}),
                     connect_timeout=5, read_timeout=10)


def _pop(demo: demo_mailbox.DemoMailbox) -> ServerSpec:
    return ServerSpec(demo_mailbox.DEMO_HOST, demo.pop3_port, Security.STARTTLS,
                      demo_mailbox.DEMO_USER)


def test_samples_are_arabic_and_english_and_oldest_first() -> None:
    raws = demo_mailbox.sample_messages(30)
    assert len(raws) == 30 and all(b"\r\n\r\n" in r for r in raws)
    text = b"".join(raws).decode("ascii", "replace")
    assert "=?utf-8?" in text.lower()  # Arabic subjects/names, encoded as mail is
    assert b"Invoice for November" in b"".join(raws) or b"Weekend plans" in b"".join(raws)


def test_fetch_everything_exactly_once_then_delete(demo: demo_mailbox.DemoMailbox,
                                                   tmp_path: Path) -> None:
    sent = [raw for _, raw in demo.mailbox.snapshot()]
    store = SqliteStore(str(tmp_path / "s.sqlite"))
    creds = Credentials(AuthMethod.PASSWORD, "demo-pass")
    report = fetch(_pop(demo), creds, RetrievalPolicy(), store, store, net=_net(demo))
    assert report.stored == 40 and store.raw_messages() == sent
    again = fetch(_pop(demo), creds, RetrievalPolicy(delete=DeletePolicy.DELETE), store, store,
                  net=_net(demo))
    assert again.stored == 0 and again.deleted == 40 and demo.mailbox.snapshot() == []


def test_wrong_password_is_an_authentication_failure(demo: demo_mailbox.DemoMailbox,
                                                     tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.sqlite"))
    with pytest.raises(E.AuthenticationFailed):
        fetch(_pop(demo), Credentials(AuthMethod.PASSWORD, "nope"), RetrievalPolicy(), store,
              store, net=_net(demo))


def test_mail_sent_to_the_demo_address_comes_back_by_pop3(demo: demo_mailbox.DemoMailbox,
                                                          tmp_path: Path) -> None:
    raw = (b"From: Me <demo@mail.demo.example>\r\nTo: demo@mail.demo.example\r\n"
           b"Subject: hello me\r\n\r\nround trip\r\n")
    server = ServerSpec(demo_mailbox.DEMO_HOST, demo.smtp_port, Security.STARTTLS,
                        demo_mailbox.DEMO_USER)
    refused = smtp.send(server, Credentials(AuthMethod.PASSWORD, "demo-pass"), net=_net(demo),
                        mail_from=demo_mailbox.DEMO_ADDRESS,
                        rcpt_to=[demo_mailbox.DEMO_ADDRESS], data=raw)
    assert refused == {}
    store = SqliteStore(str(tmp_path / "s.sqlite"))
    fetch(_pop(demo), Credentials(AuthMethod.PASSWORD, "demo-pass"), RetrievalPolicy(), store,
          store, net=_net(demo))
    assert store.raw_messages()[-1].endswith(b"Subject: hello me\r\n\r\nround trip\r\n")


def test_a_restart_keeps_the_port_and_the_sample_uidls(tmp_path: Path) -> None:
    # make demo's account survives a restart: the same port is free again at once, the
    # samples keep their UIDLs (not fetched twice), and mail that arrives in the new run
    # gets a UIDL the old run never gave (so the ledger does not skip it).
    first = demo_mailbox.start(tmp_path / "a", password="pw", count=3)
    port = first.pop3_port
    first.mailbox.add(b"Subject: a\r\n\r\nx\r\n")
    old = [u for u, _ in first.mailbox.snapshot()]
    first.stop()
    second = demo_mailbox.start(tmp_path / "b", password="pw", count=3, pop3_port=port)
    try:
        assert second.pop3_port == port
        second.mailbox.add(b"Subject: b\r\n\r\nx\r\n")
        new = [u for u, _ in second.mailbox.snapshot()]
        assert new[:3] == old[:3] == ["demo-000001", "demo-000002", "demo-000003"]
        assert new[3] != old[3]
    finally:
        second.stop()
