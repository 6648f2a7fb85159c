"""scheduling: check-now requests and cross-process fetch progress on the account

Revision ID: 0002_scheduling
Revises: 0001_initial
Create Date: 2026-11-27 07:20:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002_scheduling"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS: list[tuple[str, sa.types.TypeEngine[Any]]] = [
    ("check_requested_at", sa.DateTime(timezone=True)),
    ("progress_started_at", sa.DateTime(timezone=True)),
    ("progress_done", sa.Integer()),
    ("progress_total", sa.Integer()),
    ("progress_bytes", sa.BigInteger()),
    ("progress_bytes_total", sa.BigInteger()),
]


def upgrade() -> None:
    with op.batch_alter_table("popaccounts_account") as batch:
        for name, type_ in _COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("popaccounts_account") as batch:
        for name, _type in reversed(_COLUMNS):
            batch.drop_column(name)
