"""The extension's Alembic lineage (branch label ``popaccounts``), run programmatically.

It ships inside the package (``env.py``, ``script.py.mako``, ``versions/``), so after a
plain ``pip install`` a host runs ``flask popaccounts db upgrade`` (or calls
:func:`upgrade`) and gets exactly the tables of :mod:`flask_popaccounts.models`.

Run this way, the lineage keeps its revision in its own version table,
``popaccounts_alembic_version``, so it never meets the host's own Alembic history in
``alembic_version``. A host that prefers one Alembic environment for everything
includes this lineage instead through ``version_locations`` (see the top-level
``migrations/`` folder of the repository, which does exactly that for the example
app); then the revision lives in the host's table. Use one way or the other per
database, not both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

HERE = Path(__file__).resolve().parent
VERSIONS = HERE / "versions"
#: The version table used when the lineage runs on its own.
VERSION_TABLE = "popaccounts_alembic_version"
BRANCH = "popaccounts"


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic filter: only the extension's tables (the host's share the database)."""
    if type_ == "table":
        return bool(name) and str(name).startswith("popaccounts_") and name != VERSION_TABLE
    return True


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Render the UTC decorator as its plain DateTime, so revisions never import models."""
    from ..models import UTCDateTime

    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def alembic_config(engine: Engine | None = None, *, url: str | None = None) -> Config:
    """An Alembic Config pointing at the packaged scripts (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(VERSIONS))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "heads", *, sql: bool = False) -> None:
    """Bring the extension's tables to ``revision`` (default: the newest)."""
    if sql:
        command.upgrade(alembic_config(url=engine.url.render_as_string(hide_password=False)),
                        revision, sql=True)
        return
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Go back to ``revision`` ("base" drops every popaccounts table)."""
    command.downgrade(alembic_config(engine), revision)


def current(engine: Engine) -> str | None:
    """The lineage's revision in this database, or None before the first upgrade."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        heads = ctx.get_current_heads()
    return ",".join(heads) if heads else None
