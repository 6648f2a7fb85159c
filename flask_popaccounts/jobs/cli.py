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


def _fetch_one(account_id: int, label: str) -> bool:
    """Fetch one account through a claim, with a progress bar; True on success.

    The lease is renewed while the fetch runs (services.fetching.run_claimed), so a
    long first sync from the command line keeps its claim against the scheduler.
    """
    from ..services.fetching import FetchSkipped, run_claimed
    from ..services.scheduling import LeaseLost, claim, new_worker_id

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    state = get_state(app)
    owner = new_worker_id()
    with state.session_factory() as session:
        if not claim(session, owner, account_id, int(app.config["POPACCOUNTS_LEASE_SECONDS"]),
                     now=state.clock()):
            click.echo(f"{label}: being fetched elsewhere right now; skipped.")
            return True
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
        click.echo(f"{label}: not fetched ({exc.reason}).")
        return exc.reason not in ("needs_password", "needs_reauth")
    except PopAccountsError as exc:
        click.echo(f"{label}: failed: {exc.title} ({exc.code}). {exc.help}", err=True)
        return False
    except LeaseLost:
        click.echo(f"{label}: taken over by another process; stopped.", err=True)
        return False
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    click.echo(f"{label}: {report.new} new on the server, {report.stored} stored "
               f"({report.bytes_stored} bytes), {report.deleted} deleted from the server.")
    return True


@popaccounts_cli.command("fetch")
@click.option("--account", "account_id", type=int, help="The account's id.")
@click.option("--all", "all_", is_flag=True, help="Every enabled account.")
@with_appcontext
def fetch_command(account_id: int | None, all_: bool) -> None:
    """Fetch mail now, with a progress bar (through the same claim as the scheduler)."""
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
    ok = True
    for aid, email in rows:
        ok = _fetch_one(int(aid), f"#{aid} {email}") and ok
    if not ok:
        raise SystemExit(1)


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
