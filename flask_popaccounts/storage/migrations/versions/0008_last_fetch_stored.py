"""the last fetch's result: how many messages it stored (the card's "N messages fetched")

Revision ID: 0008_last_fetch_stored
Revises: 0007_fetch_faults
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008_last_fetch_stored"
down_revision: str | Sequence[str] | None = "0007_fetch_faults"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("popaccounts_account") as batch:
        batch.add_column(sa.Column("last_fetch_stored", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("popaccounts_account") as batch:
        batch.drop_column("last_fetch_stored")
