"""Alembic environment of the extension's own lineage (used by ``flask popaccounts db``).

Connects with ``config.attributes["engine"]`` when given (the programmatic path), else
``sqlalchemy.url``; touches only ``popaccounts_*`` tables; keeps its revision in
``popaccounts_alembic_version``. SQLite gets batch mode, so later ALTERs work there too.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import create_engine

from flask_popaccounts.storage.migrations import VERSION_TABLE, include_name, render_item
from flask_popaccounts.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _options(dialect_name: str) -> dict[str, Any]:
    return {
        "target_metadata": target_metadata,
        "version_table": VERSION_TABLE,
        "include_name": include_name,
        "render_item": render_item,
        "compare_type": True,
        "render_as_batch": dialect_name == "sqlite",
    }


def run_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    dialect = (url or "sqlite").split(":", 1)[0].split("+", 1)[0]
    context.configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"},
                      **_options(dialect))
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(connection=connection, **_options(connection.dialect.name))
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
