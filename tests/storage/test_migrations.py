"""The packaged Alembic lineage brings an empty database to exactly the models' schema."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from flask_popaccounts.storage import migrations
from flask_popaccounts.storage.models import Base


def schema_diff(engine) -> list:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={
            "compare_type": True,
            "include_name": migrations.include_name,
            "target_metadata": Base.metadata,
        })
        return compare_metadata(ctx, Base.metadata)


def check_lineage(engine) -> None:
    # a host table in the same database must be left alone
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE host_users (id INTEGER PRIMARY KEY, name VARCHAR(50))"))
    assert migrations.current(engine) is None
    migrations.upgrade(engine)
    assert migrations.current(engine) == "0005_fetch_faults"
    assert schema_diff(engine) == []
    tables = set(inspect(engine).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} <= tables
    assert "popaccounts_alembic_version" in tables and "host_users" in tables
    migrations.upgrade(engine)  # idempotent
    migrations.downgrade(engine, "base")
    left = set(inspect(engine).get_table_names())
    assert not {t for t in left if t.startswith("popaccounts_") and "version" not in t}
    assert "host_users" in left


def test_sqlite_migrations_match_models(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    check_lineage(engine)
    engine.dispose()


@pytest.mark.postgres
def test_postgresql_migrations_match_models(postgres):
    engine = create_engine(postgres.create_database())
    check_lineage(engine)
    engine.dispose()


def test_offline_sql_is_printed(tmp_path, capsys):
    engine = create_engine(f"sqlite:///{tmp_path / 'o.db'}")
    migrations.upgrade(engine, sql=True)
    out = capsys.readouterr().out
    assert "CREATE TABLE popaccounts_account" in out
