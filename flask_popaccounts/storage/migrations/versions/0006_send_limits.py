"""send limits: confirmation emails counted apart from send-as rows; when filters and
vacation replies were switched on

Revision ID: 0006_send_limits
Revises: 0004_filters_vacation
Create Date: 2026-12-02 13:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006_send_limits"
down_revision: str | Sequence[str] | None = "0004_filters_vacation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "popaccounts_code_send",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.String(length=255), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_popaccounts_code_send")),
    )
    for column in ("owner_id", "address", "sent_at"):
        op.create_index(op.f(f"ix_popaccounts_code_send_{column}"), "popaccounts_code_send",
                        [column], unique=False)
    with op.batch_alter_table("popaccounts_filter") as batch:
        batch.add_column(sa.Column("enabled_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("popaccounts_vacation") as batch:
        batch.add_column(sa.Column("enabled_at", sa.DateTime(timezone=True), nullable=True))
    # Rules and replies that are on now count as switched on now: mail already stored,
    # or fetched again later, does not trigger them; new mail does.
    for name in ("popaccounts_filter", "popaccounts_vacation"):
        table = sa.table(name, sa.column("enabled", sa.Boolean()),
                         sa.column("enabled_at", sa.DateTime(timezone=True)))
        op.execute(table.update().where(table.c.enabled == sa.true())
                   .values(enabled_at=sa.func.now()))


def downgrade() -> None:
    with op.batch_alter_table("popaccounts_vacation") as batch:
        batch.drop_column("enabled_at")
    with op.batch_alter_table("popaccounts_filter") as batch:
        batch.drop_column("enabled_at")
    for column in ("sent_at", "address", "owner_id"):
        op.drop_index(op.f(f"ix_popaccounts_code_send_{column}"),
                      table_name="popaccounts_code_send")
    op.drop_table("popaccounts_code_send")
