"""Host-side Alembic environment: one history for the host's tables and the extension's.

This folder is what a host webmail that already uses Alembic does to adopt
flask-popaccounts, shown on the example webmail:

- ``alembic.ini`` lists two ``version_locations``: ``versions/`` (the host's own
  revisions, here the example's ``example_user`` table, branch label ``host``) and
  ``flask_popaccounts:storage/migrations/versions`` (the extension's lineage, branch label
  ``popaccounts``, resolved inside the *installed* package, so it works after a plain
  ``pip install flask-popaccounts``);
- ``target_metadata`` is the host's MetaData plus the extension's, so
  ``revision --autogenerate`` sees both and proposes nothing for tables already
  covered by either lineage;
- both lineages share the host's ``alembic_version`` table, one head each, and
  ``alembic upgrade heads`` moves both; new extension releases arrive as new revisions
  in the package and are picked up by the same command.

This is the alternative to ``flask popaccounts db upgrade`` (which runs the extension's
lineage alone, recording it in ``popaccounts_alembic_version``). Use one or the other
for a given database, not both: the example webmail itself runs the latter at start-up,
so point this environment at a fresh database (``-x url=...``).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from alembic import context
from sqlalchemy import MetaData, create_engine

from flask_popaccounts.storage.migrations import render_item
from flask_popaccounts.storage.models import Base

config = context.config


def _host_metadata() -> MetaData | None:
    spec = os.environ.get("HOST_METADATA") or config.get_main_option("host_metadata")
    if not spec:
        return None
    module, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


def _url() -> str:
    x = context.get_x_argument(as_dictionary=True)
    return x.get("url") or os.environ.get("DATABASE_URL") or config.get_main_option(
        "sqlalchemy.url") or ""


host = _host_metadata()
target_metadata = [m for m in (host, Base.metadata) if m is not None]


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    # The extension's standalone version table is not part of either schema.
    return not (type_ == "table" and name == "popaccounts_alembic_version")


def _options() -> dict[str, Any]:
    return {"target_metadata": target_metadata, "compare_type": True,
            "include_name": include_name, "render_item": render_item}


if context.is_offline_mode():
    context.configure(url=_url(), literal_binds=True, **_options())
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(_url())
    with engine.connect() as connection:
        context.configure(connection=connection,
                          render_as_batch=connection.dialect.name == "sqlite", **_options())
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
