"""The repository's top-level ``migrations/``: a host Alembic environment that includes
the extension's lineage via ``version_locations`` next to the host's own revisions."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from flask_popaccounts.storage.models import Base

INI = Path(__file__).resolve().parents[2] / "migrations" / "alembic.ini"


def upgrade_and_compare(url: str, monkeypatch) -> None:
    from example_app import db as example_db

    monkeypatch.setenv("DATABASE_URL", url)
    cfg = Config(str(INI))
    command.upgrade(cfg, "heads")
    engine = create_engine(url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert set(ctx.get_current_heads()) == {"0005_fetch_faults", "e0001_users"}
        assert compare_metadata(ctx, [example_db.metadata, Base.metadata]) == []
    tables = set(inspect(engine).get_table_names())
    assert "example_user" in tables and "popaccounts_account" in tables
    assert "popaccounts_alembic_version" not in tables  # one shared history
    engine.dispose()
    command.downgrade(cfg, "popaccounts@base")  # each lineage moves on its own
    engine = create_engine(url)
    assert "popaccounts_account" not in inspect(engine).get_table_names()
    engine.dispose()


def test_host_environment_sqlite(tmp_path, monkeypatch):
    upgrade_and_compare(f"sqlite:///{tmp_path / 'host.db'}", monkeypatch)


@pytest.mark.postgres
def test_host_environment_postgresql(postgres, monkeypatch):
    upgrade_and_compare(postgres.create_database(), monkeypatch)
