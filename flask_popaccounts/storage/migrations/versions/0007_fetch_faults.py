"""fetch faults: messages set aside, too large, or not deleted; the account's warning

Revision ID: 0007_fetch_faults
Revises: 0006_send_limits
Create Date: 2026-12-02 13:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007_fetch_faults"
down_revision: str | Sequence[str] | None = "0006_send_limits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "popaccounts_fetch_fault",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("uidl", sa.String(length=70), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("from_addr", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("fetch_anyway", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["popaccounts_account.id"],
            name=op.f("fk_popaccounts_fetch_fault_account_id_popaccounts_account"),
            ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", "uidl", name=op.f("pk_popaccounts_fetch_fault")),
    )
    with op.batch_alter_table("popaccounts_account") as batch:
        batch.add_column(sa.Column("fetch_warning", sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("popaccounts_account") as batch:
        batch.drop_column("fetch_warning")
    op.drop_table("popaccounts_fetch_fault")
