"""filters and vacation: the outbox of mail to send after a fetch, vacation memory

Revision ID: 0004_filters_vacation
Revises: 0003_sending
Create Date: 2026-11-27 08:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004_filters_vacation"
down_revision: str | Sequence[str] | None = "0003_sending"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "popaccounts_vacation_replied",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("last_replied_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["popaccounts_account.id"],
            name=op.f("fk_popaccounts_vacation_replied_account_id_popaccounts_account"),
            ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", "sender",
                                name=op.f("pk_popaccounts_vacation_replied")),
    )
    op.create_table(
        "popaccounts_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["popaccounts_account.id"],
                                name=op.f("fk_popaccounts_outbox_account_id_popaccounts_account"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["message_id"], ["popaccounts_message.id"],
                                name=op.f("fk_popaccounts_outbox_message_id_popaccounts_message"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_popaccounts_outbox")),
    )
    op.create_index(op.f("ix_popaccounts_outbox_account_id"), "popaccounts_outbox",
                    ["account_id"], unique=False)
    op.create_index(op.f("ix_popaccounts_outbox_state"), "popaccounts_outbox", ["state"],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_popaccounts_outbox_state"), table_name="popaccounts_outbox")
    op.drop_index(op.f("ix_popaccounts_outbox_account_id"), table_name="popaccounts_outbox")
    op.drop_table("popaccounts_outbox")
    op.drop_table("popaccounts_vacation_replied")
