"""Sessions of N messages, the CLI fetch with its progress bar, the reloader guard."""

from __future__ import annotations

import click
import pytest
from sqlalchemy import update

from flask_popaccounts import get_state
from flask_popaccounts.engine.types import Progress
from flask_popaccounts.jobs.scheduler import in_reloader_watcher, start_in_process
from flask_popaccounts.services import fetching, scheduling
from flask_popaccounts.storage import mailbox
from flask_popaccounts.storage.models import Account, AccountStatus

from .conftest import account, add_account, logins, messages


def test_fetch_quits_every_n_messages_and_progress_covers_the_backlog(sched_app, dovecot,
                                                                       new_user):
    app = sched_app(POPACCOUNTS_MAX_MESSAGES_PER_SESSION=10)
    user, pw = new_user
    dovecot.deliver_many(user, messages(user, 25))
    aid = add_account(app, dovecot, user, pw)
    before = logins(dovecot, user)
    seen: list[Progress] = []
    report = fetching.fetch_account(app, aid, progress=seen.append)
    assert (report.new, report.stored, report.more_pending) == (25, 25, False)
    assert logins(dovecot, user) - before == 3  # 10 + 10 + 5: three sessions, each QUIT
    assert [p.done for p in seen] == list(range(1, 26))
    assert seen[-1].total == 25 and all(p.total >= 10 for p in seen)
    assert seen[12].total == 25  # from the second session on, the whole backlog is known
    with get_state(app).session_factory() as session:
        assert mailbox.count_messages(session, aid) == 25
    assert account(app, aid).progress_done is None  # cleared at the end


def test_cli_fetch_shows_a_progress_bar_and_releases_the_claim(sched_app, dovecot, new_user):
    app = sched_app()
    user, pw = new_user
    dovecot.deliver_many(user, messages(user, 6))
    aid = add_account(app, dovecot, user, pw)
    result = app.test_cli_runner().invoke(args=["popaccounts", "fetch", "--account", str(aid)])
    assert result.exit_code == 0, result.output
    # (not a terminal: click prints the bar's label once instead of redrawing it)
    lines = result.output.splitlines()
    assert lines[0] == f"#{aid} {user}@example.net"
    assert "6 new on the server, 6 stored" in lines[1]
    acc = account(app, aid)
    assert acc.lease_owner is None and acc.message_count == 6
    # Held by someone else (a live lease, as after a crash): the CLI does not wait, and
    # says with its exit status that nothing was fetched (75, EX_TEMPFAIL), so cron and
    # scripts can tell.
    with get_state(app).session_factory() as session:
        assert scheduling.claim(session, "someone-else", aid, 60)
    dovecot.deliver_many(user, messages(user, 2, start=6))
    for args in (["--account", str(aid)], ["--all"]):
        result = app.test_cli_runner().invoke(args=["popaccounts", "fetch", *args])
        assert result.exit_code == 75, result.output
        assert "not fetched: being fetched elsewhere" in result.output
    assert account(app, aid).message_count == 6
    # Waiting for its user (the password was refused): 77; a failed fetch: 1.
    with get_state(app).session_factory() as session:
        scheduling.release(session, "someone-else", aid)
        session.execute(update(Account).where(Account.id == aid)
                        .values(status=AccountStatus.NEEDS_PASSWORD.value))
        session.commit()
    result = app.test_cli_runner().invoke(args=["popaccounts", "fetch", "--account", str(aid)])
    assert result.exit_code == 77 and "not fetched (needs_password)" in result.output
    with get_state(app).session_factory() as session:
        session.execute(update(Account).where(Account.id == aid)
                        .values(status=AccountStatus.OK.value, pop_port=1))
        session.commit()
    app.config["POPACCOUNTS_ALLOWED_POP3_PORTS"] = (1,)
    result = app.test_cli_runner().invoke(args=["popaccounts", "fetch", "--account", str(aid)])
    assert result.exit_code == 1 and "failed:" in result.output
    # Fetched: 0 (the two new ones).
    app.config["POPACCOUNTS_ALLOWED_POP3_PORTS"] = (dovecot.pop3s_port,)
    with get_state(app).session_factory() as session:
        session.execute(update(Account).where(Account.id == aid)
                        .values(pop_port=dovecot.pop3s_port))
        session.commit()
    result = app.test_cli_runner().invoke(args=["popaccounts", "fetch", "--account", str(aid)])
    assert result.exit_code == 0 and account(app, aid).message_count == 8


def _in_run_command(reload: bool | None) -> bool:
    run = click.Command("run", params=[click.Option(["--reload/--no-reload"], default=None)])
    with click.Context(run) as ctx:
        ctx.params["reload"] = reload
        return in_reloader_watcher(app=None)  # type: ignore[arg-type]


def test_scheduler_is_not_started_in_the_reloader_watcher(monkeypatch, sched_app):
    monkeypatch.delenv("WERKZEUG_RUN_MAIN", raising=False)
    assert _in_run_command(True)  # flask run --reload: the watcher never serves
    assert not _in_run_command(False)  # flask run --no-reload: this is the server
    monkeypatch.setenv("FLASK_DEBUG", "1")
    assert _in_run_command(None)  # flask run --debug: reloader on by default
    monkeypatch.setenv("WERKZEUG_RUN_MAIN", "true")
    assert not _in_run_command(True)  # the serving child
    monkeypatch.delenv("WERKZEUG_RUN_MAIN")
    # Outside `flask run` (gunicorn, `flask popaccounts scheduler`): always serving.
    assert not in_reloader_watcher(app=None)  # type: ignore[arg-type]
    app = sched_app()
    run = click.Command("run", params=[click.Option(["--reload/--no-reload"], default=None)])
    with click.Context(run) as ctx:
        ctx.params["reload"] = True
        assert start_in_process(app) is None
    assert get_state(app).scheduler is None
    # Other CLI commands (db upgrade, shell, fetch) load the app without a scheduler...
    with click.Context(click.Command("upgrade")):
        assert start_in_process(app) is None
    assert get_state(app).scheduler is None
    # ...and `flask popaccounts scheduler` starts one on purpose.
    with click.Context(click.Command("scheduler")):
        sched = start_in_process(app, explicit=True)
    assert sched is not None and sched.running and get_state(app).scheduler is sched


@pytest.mark.parametrize("status", ["needs_password", "needs_reauth"])
def test_check_now_never_logs_in_with_refused_credentials(sched_app, dovecot, new_user,
                                                          status):
    app = sched_app()
    user, pw = new_user
    aid = add_account(app, dovecot, user, pw)
    from sqlalchemy import update

    from flask_popaccounts.storage.models import Account

    with get_state(app).session_factory() as session:
        session.execute(update(Account).where(Account.id == aid).values(status=status))
        session.commit()
    before = logins(dovecot, user)
    assert fetching.check_now(app, aid) is False
    start_in_process(app)
    assert fetching.check_now(app, aid) is False
    with pytest.raises(fetching.FetchSkipped):
        fetching.fetch_account(app, aid)
    assert logins(dovecot, user) == before
