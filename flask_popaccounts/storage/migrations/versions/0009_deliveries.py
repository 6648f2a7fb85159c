"""deliveries: open delivery intents (LMTP) and messages a scanner rejected

Revision ID: 0009_deliveries
Revises: 0008_last_fetch_stored
Create Date: 2026-12-03 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009_deliveries"
down_revision: str | Sequence[str] | None = "0008_last_fetch_stored"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "popaccounts_delivery",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("uidl", sa.String(length=70), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("target", sa.String(length=32), nullable=False),
        sa.Column("delivery_id", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("from_addr", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["popaccounts_account.id"],
            name=op.f("fk_popaccounts_delivery_account_id_popaccounts_account"),
            ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", "uidl", name=op.f("pk_popaccounts_delivery")),
    )


def downgrade() -> None:
    op.drop_table("popaccounts_delivery")
