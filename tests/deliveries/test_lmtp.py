"""LMTP delivery into a real Dovecot platform (read back over IMAP), and its replies."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trustme
from flask import Flask
from sqlalchemy import delete, insert, select

from flask_popaccounts import get_state
from flask_popaccounts.engine.delivery import (
    DeliveryRefused,
    DeliveryUnavailable,
    ScanResult,
    Verdict,
)
from flask_popaccounts.engine.types import DeletePolicy, Security
from flask_popaccounts.hooks import Delivery, Hooks
from flask_popaccounts.services import fetching
from flask_popaccounts.storage.deliveries import records
from flask_popaccounts.storage.deliveries.lmtp import ImapReadBack, Lmtp
from flask_popaccounts.storage.models import Account, AccountStatus, UidlEntry
from tests.deliveries.conftest import add_account
from tests.support.dovecot import Dovecot
from tests.support.fakelmtp import FakeLMTP
from tests.support.mail import make_message
from tests.support.platform import Platform, as_fetched


def lmtp_to(platform: Platform, address: str, *, read_back: bool = True,
            **kw: object) -> Lmtp:
    back = ImapReadBack("127.0.0.1", platform.imaps_port,
                        login=lambda rcpt: (rcpt, "platform-secret")) if read_back else None
    return Lmtp("127.0.0.1", platform.lmtp_port, recipient=lambda owner, account: address,
                read_back=back, **kw)  # type: ignore[arg-type]


def state(app: Flask, account_id: int) -> tuple[str, str | None, int, set[str]]:
    """(status, last error, ledger rows, open intents) of the account."""
    with get_state(app).session_factory() as session:
        account = session.get(Account, account_id)
        assert account is not None
        n = len(list(session.scalars(select(UidlEntry.uidl)
                                     .where(UidlEntry.account_id == account_id))))
        return (str(account.status), account.last_error_code, n,
                records.open_intents(session, account_id))


def test_fetched_mail_ends_in_the_platform_inbox_exactly_once(
        host_app: Callable[..., Flask], dovecot: Dovecot, new_user: tuple[str, str],
        platform: Platform, platform_user: str) -> None:
    user, password = new_user
    originals = [make_message(i, body_size=300 * i) for i in range(6)]
    dovecot.deliver_many(user, originals[:4])
    app = host_app(Hooks(delivery=lmtp_to(platform, platform_user)),
                   trust=(platform.ca_file,))
    account_id = add_account(app, dovecot, user, password)
    fetched: list[dict[str, object]] = []
    from flask_popaccounts import signals

    def on_fetched(sender: Flask, **kw: object) -> None:
        fetched.append(kw)

    signals.message_fetched.connect(on_fetched)
    try:
        with app.app_context():
            assert fetching.fetch_account(app, account_id).stored == 4
            dovecot.deliver_many(user, originals[4:])
            assert fetching.fetch_account(app, account_id).stored == 2
            assert fetching.fetch_account(app, account_id).stored == 0
    finally:
        signals.message_fetched.disconnect(on_fetched)
    stored = [as_fetched(m) for m in platform.messages(platform_user)]
    assert sorted(raw for _id, raw in stored) == sorted(originals)  # once each, whole
    assert len({did for did, _raw in stored}) == 6
    assert sorted(kw["delivery_id"] for kw in fetched) == sorted(d for d, _ in stored)
    assert all(kw["message_id"] is None for kw in fetched)
    assert dovecot.server_messages(user) == []
    assert state(app, account_id) == ("ok", None, 6, set())


def test_junk_goes_to_the_junk_folder_by_detail_or_is_flagged(
        host_app: Callable[..., Flask], dovecot: Dovecot, new_user: tuple[str, str],
        platform: Platform, platform_user: str) -> None:
    user, password = new_user
    spam, ham = make_message(1, subject="Cheap pills"), make_message(2, subject="Hi")

    def scan(message: object, **kw: object) -> ScanResult | None:
        raw = message.spool.read()  # type: ignore[attr-defined]
        return ScanResult(Verdict.JUNK, "spam") if b"Cheap" in raw else None

    for detail in ("+", None):
        dovecot.deliver_many(user, [spam, ham])
        app = host_app(Hooks(delivery=lmtp_to(platform, platform_user,
                                              folder_delimiter=detail),
                             scanners=[scan]), trust=(platform.ca_file,))
        account_id = add_account(app, dovecot, user, password)
        with app.app_context():
            assert fetching.fetch_account(app, account_id).stored == 2
    junk = platform.messages(platform_user, "Junk")
    assert [as_fetched(m)[1] for m in junk] == [spam]  # user+Junk@...: Dovecot's detail
    inbox = platform.messages(platform_user)
    assert sorted(as_fetched(m)[1] for m in inbox) == sorted(
        [ham, ham, b"X-Spam-Flag: YES\r\nX-Spam: Yes\r\n" + spam])


def test_a_read_back_settles_the_message_a_crash_left_in_flight(
        host_app: Callable[..., Flask], dovecot: Dovecot, new_user: tuple[str, str],
        platform: Platform, platform_user: str) -> None:
    """The crash between the platform's 250 and our commit: the message is there, its
    intent is open, its ledger row missing. With a read-back nothing arrives twice;
    without one, exactly that message does (what the README promises)."""
    user, password = new_user
    originals = [make_message(i) for i in range(3)]
    dovecot.deliver_many(user, originals)
    for read_back, copies in ((True, 1), (False, 2)):
        app = host_app(Hooks(delivery=lmtp_to(platform, platform_user, read_back=read_back)),
                       trust=(platform.ca_file,))
        account_id = add_account(app, dovecot, user, password, delete=DeletePolicy.KEEP)
        with app.app_context():
            assert fetching.fetch_account(app, account_id).stored == 3
        with get_state(app).session_factory() as session:
            last = max(session.scalars(select(UidlEntry.uidl)))
            session.execute(delete(UidlEntry).where(UidlEntry.uidl == last))
            session.execute(insert(records.DeliveryRecord), [records.row(
                account_id, last, records.SENDING, target="lmtp",
                at=get_state(app).clock())])
            session.commit()
        with app.app_context():
            assert fetching.fetch_account(app, account_id).stored == 1
        assert state(app, account_id)[2:] == (3, set())
        stored = [as_fetched(m)[1] for m in platform.messages(platform_user)]
        assert sorted(stored.count(m) for m in originals) == [1, 1, copies], read_back
        with platform.imap(platform_user) as im:  # start the next round empty
            im.select("INBOX")
            im.store("1:*", "+FLAGS", "\\Deleted")
            im.expunge()


def test_an_unknown_recipient_is_a_named_error_and_nothing_is_lost(
        host_app: Callable[..., Flask], dovecot: Dovecot, new_user: tuple[str, str],
        platform: Platform) -> None:
    user, password = new_user
    dovecot.deliver_many(user, [make_message(1), make_message(2)])
    app = host_app(Hooks(delivery=lmtp_to(platform, "nobody-here@platform.test")),
                   trust=(platform.ca_file,))
    account_id = add_account(app, dovecot, user, password)
    with app.app_context(), pytest.raises(DeliveryRefused, match="refused"):
        fetching.fetch_account(app, account_id)
    assert state(app, account_id) == (AccountStatus.NEEDS_ATTENTION.value,
                                      "delivery_refused", 0, set())
    assert len(dovecot.server_messages(user)) == 2


def test_the_platform_certificate_is_verified(
        host_app: Callable[..., Flask], dovecot: Dovecot, new_user: tuple[str, str],
        platform: Platform, platform_user: str) -> None:
    user, password = new_user
    dovecot.deliver_many(user, [make_message(1)])
    app = host_app(Hooks(delivery=lmtp_to(platform, platform_user)))  # its CA not trusted
    account_id = add_account(app, dovecot, user, password)
    with app.app_context(), pytest.raises(DeliveryRefused) as info:
        fetching.fetch_account(app, account_id)
    assert "certificate_invalid" in info.value.detail
    assert len(dovecot.server_messages(user)) == 1 and platform.messages(platform_user) == []


def test_a_4xx_stops_the_fetch_and_the_next_one_delivers(
        host_app: Callable[..., Flask], dovecot: Dovecot, new_user: tuple[str, str]) -> None:
    """Against an LMTP server without CHUNKING (DATA, dot-stuffed) that wants AUTH."""
    user, password = new_user
    originals = [make_message(i) for i in range(3)]  # lines that start with "."
    dovecot.deliver_many(user, originals)
    ca = trustme.CA()
    with FakeLMTP(ca, auth={"fetcher": "lmtp-secret"}) as server:
        ca_file = server._dir.name + "/ca.pem"
        ca.cert_pem.write_to_path(ca_file)
        delivery = Lmtp("127.0.0.1", server.port, recipient=lambda o, a: "alice@platform.test",
                        security=Security.STARTTLS, username="fetcher",
                        password="lmtp-secret")
        app = host_app(Hooks(delivery=delivery), trust=(ca_file,))
        account_id = add_account(app, dovecot, user, password)
        server.replies = ["250 2.0.0 OK", "451 4.3.0 Try again later"]
        with app.app_context(), pytest.raises(DeliveryUnavailable):
            fetching.fetch_account(app, account_id)
        assert state(app, account_id) == (AccountStatus.RETRYING.value,
                                          "delivery_unavailable", 1, set())
        assert len(dovecot.server_messages(user)) == 3  # the delivered one: deleted later
        with app.app_context():
            assert fetching.fetch_account(app, account_id).stored == 2
        assert state(app, account_id) == ("ok", None, 3, set())
        assert dovecot.server_messages(user) == []
        got = [as_fetched(data)[1] for _rcpt, data in server.received]
        assert sorted(got) == sorted(originals)
        assert all(rcpt == ["alice@platform.test"] for rcpt, _ in server.received)
        server.replies = ["552 5.2.2 Mailbox full"]
        dovecot.deliver(user, make_message(9))
        with app.app_context(), pytest.raises(DeliveryUnavailable) as full:
            fetching.fetch_account(app, account_id)
        assert full.value.code == "platform_full" and full.value.transient


def test_the_lmtp_delivery_fits_the_hook() -> None:
    delivery = Lmtp("127.0.0.1", 24, recipient=lambda owner, account: "a@b.example")
    assert isinstance(delivery, Delivery) and not delivery.idempotent
