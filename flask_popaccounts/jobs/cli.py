"""``flask popaccounts ...``: keys, migrations, fetching from the command line.

Commands::

    flask popaccounts generate-key           print a new Fernet key for POPACCOUNTS_SECRET_KEYS
    flask popaccounts rotate-key             re-encrypt every stored secret with the first key
    flask popaccounts db upgrade [REV]       apply the extension's migrations (default: head)
    flask popaccounts db current             show the extension's schema revision
    flask popaccounts fetch --account ID     fetch one account now, with a progress bar
    flask popaccounts fetch --all            fetch every enabled account now
    flask popaccounts scheduler              run only the fetch scheduler, in the foreground

Like the pages and the scheduler, these call services, never the engine.
"""

from __future__ import annotations

import time
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select

from ..engine.errors import PopAccountsError
from ..engine.types import Progress
from ..runtime import get_state
from ..storage.crypto import generate_key
from ..storage.models import Account

popaccounts_cli = AppGroup("popaccounts", help="POP accounts: keys, migrations, fetching.")


@popaccounts_cli.command("generate-key")
def generate_key_command() -> None:
    """Print a new Fernet key (put it first in POPACCOUNTS_SECRET_KEYS)."""
    click.echo(generate_key())


@popaccounts_cli.command("rotate-key")
@with_appcontext
def rotate_key_command() -> None:
    """Re-encrypt every stored secret with the first configured key.

    Put the new key in front of POPACCOUNTS_SECRET_KEYS, keep the old ones after it,
    run this, then the old keys can be removed.
    """
    state = get_state()
    n = 0
    with state.session_factory() as session:
        for account in session.scalars(select(Account).where(Account.secret_enc.is_not(None))):
            assert account.secret_enc is not None
            account.secret_enc = state.secrets.rotate(account.secret_enc)
            n += 1
        session.commit()
    click.echo(f"Re-encrypted {n} secret(s) with the primary key.")


@popaccounts_cli.group("db")
def db_group() -> None:
    """The extension's own schema (Alembic lineage, branch label "popaccounts")."""


@db_group.command("upgrade")
@click.argument("revision", default="heads")
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it.")
@with_appcontext
def db_upgrade_command(revision: str, sql: bool) -> None:
    """Bring the extension's tables up to REVISION (default: the newest)."""
    from ..storage import migrations

    migrations.upgrade(get_state().engine, revision, sql=sql)
    if not sql:
        click.echo(f"popaccounts schema at {migrations.current(get_state().engine) or 'base'}")


@db_group.command("current")
@with_appcontext
def db_current_command() -> None:
    """Show the extension's schema revision in the app's database."""
    from ..storage import migrations

    click.echo(migrations.current(get_state().engine) or "base (no popaccounts tables)")


#: Exit statuses of ``flask popaccounts fetch`` (sysexits.h where one fits); with
#: ``--all`` the most serious one over the accounts (FAILED first).
EXIT_FETCHED = 0
EXIT_FAILED = 1  #: the fetch failed (the named error is printed and recorded on the card)
EXIT_BUSY = 75  #: EX_TEMPFAIL: not fetched now, it will be (fetched elsewhere, taken over,
#: storage full): try again later
EXIT_NEEDS_USER = 77  #: EX_NOPERM: not fetched until its user acts (disabled, password
#: refused, re-authenticate)
_SEVERITY = (EXIT_FETCHED, EXIT_BUSY, EXIT_NEEDS_USER, EXIT_FAILED)

_WAITING_FOR_USER = ("disabled", "needs_password", "needs_reauth", "missing")


def _fetch_one(account_id: int, label: str) -> int:
    """Fetch one account through a claim, with a progress bar; the exit status.

    The lease is renewed while the fetch runs (services.fetching.run_claimed), so a
    long first sync from the command line keeps its claim against the scheduler.
    """
    from ..services.fetching import FetchSkipped, run_claimed
    from ..services.scheduling import LeaseLost, claim, new_worker_id

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    state = get_state(app)
    owner = new_worker_id()
    with state.session_factory() as session:
        if not claim(session, owner, account_id,
                     float(app.config["POPACCOUNTS_LEASE_SECONDS"])):
            click.echo(f"{label}: not fetched: being fetched elsewhere right now "
                       "(try again later).", err=True)
            return EXIT_BUSY
    bar: Any = None
    seen = 0

    def progress(p: Progress) -> None:
        nonlocal bar, seen
        if bar is None:
            if p.total <= 0:
                return
            bar = click.progressbar(length=p.total, label=label, show_pos=True)
            bar.__enter__()
        bar.length = max(bar.length or 0, p.total)
        if p.done > seen:
            bar.update(p.done - seen)
            seen = p.done

    try:
        report = run_claimed(app, account_id, owner, progress=progress)
    except FetchSkipped as exc:
        click.echo(f"{label}: not fetched ({exc.reason}).", err=True)
        return EXIT_NEEDS_USER if exc.reason in _WAITING_FOR_USER else EXIT_BUSY
    except PopAccountsError as exc:
        click.echo(f"{label}: failed: {exc.title} ({exc.code}). {exc.help}", err=True)
        return EXIT_BUSY if exc.code == "quota_exceeded" else EXIT_FAILED
    except LeaseLost:
        click.echo(f"{label}: not finished: taken over by another process; stopped.",
                   err=True)
        return EXIT_BUSY
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    click.echo(f"{label}: {report.new} new on the server, {report.stored} stored "
               f"({report.bytes_stored} bytes), {report.deleted} deleted from the server.")
    return EXIT_FETCHED


@popaccounts_cli.command("fetch")
@click.option("--account", "account_id", type=int, help="The account's id.")
@click.option("--all", "all_", is_flag=True, help="Every enabled account.")
@with_appcontext
def fetch_command(account_id: int | None, all_: bool) -> None:
    """Fetch mail now, with a progress bar (through the same claim as the scheduler).

    Exit status: 0 fetched; 1 the fetch failed; 75 not fetched now (being fetched
    elsewhere, taken over, storage full: try later); 77 not fetched until the user
    acts (disabled, password refused, re-authenticate). With --all, the most serious.
    """
    if (account_id is None) == (not all_):
        raise click.UsageError("give either --account ID or --all")
    state = get_state()
    with state.session_factory() as session:
        stmt = select(Account.id, Account.email).order_by(Account.id)
        if account_id is not None:
            stmt = stmt.where(Account.id == account_id)
        else:
            stmt = stmt.where(Account.enabled.is_(True))
        rows = session.execute(stmt).all()
    if account_id is not None and not rows:
        raise click.ClickException(f"no account with id {account_id}")
    status = EXIT_FETCHED
    for aid, email in rows:
        status = max(status, _fetch_one(int(aid), f"#{aid} {email}"), key=_SEVERITY.index)
    if status != EXIT_FETCHED:
        raise SystemExit(status)


@popaccounts_cli.command("scheduler")
@with_appcontext
def scheduler_command() -> None:
    """Run only the fetch scheduler, in the foreground, until interrupted."""
    from .scheduler import start_in_process

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    sched = start_in_process(app, explicit=True)
    assert sched is not None
    click.echo("popaccounts scheduler running; Ctrl-C to stop.")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        sched.shutdown(wait=True)
