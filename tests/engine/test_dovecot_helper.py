"""The shared Dovecot helper does what its docstring promises (others build on it)."""

from __future__ import annotations

from flask_popaccounts.engine import (
    AuthMethod,
    Credentials,
    NetPolicy,
    POP3Client,
    Security,
    ServerSpec,
)
from tests.support.dovecot import Dovecot


def test_deliver_list_and_clear(dovecot: Dovecot, new_user: tuple[str, str],
                                dovecot_net: NetPolicy) -> None:
    user, pw = new_user
    msgs = [b"Subject: one\r\n\r\n1\r\n", b"Subject: two\r\n\r\n2\r\n"]
    dovecot.deliver_many(user, msgs)
    assert sorted(dovecot.server_messages(user)) == sorted(msgs)
    client = POP3Client.open(ServerSpec("localhost", dovecot.pop3s_port, Security.SSL, user),
                             dovecot_net)
    try:
        client.login(user, Credentials(AuthMethod.PASSWORD, pw))
        before = client.uidl()
        assert client.stat()[0] == 2
        client.quit()
    finally:
        client.close()
    dovecot.clear(user)
    assert dovecot.server_messages(user) == []
    dovecot.deliver(user, msgs[0])
    client = POP3Client.open(ServerSpec("localhost", dovecot.pop3s_port, Security.SSL, user),
                             dovecot_net)
    try:
        client.login(user, Credentials(AuthMethod.PASSWORD, pw))
        after = client.uidl()
        client.quit()
    finally:
        client.close()
    assert set(after.values()).isdisjoint(before.values())  # new UIDVALIDITY after clear
    assert dovecot.log_path.exists() and "Login: user=<" + user in dovecot.log()
