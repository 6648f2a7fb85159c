"""retrieval settings per account: where mail goes, mark as read, first import "from now on"

Revision ID: 0010_retrieval_settings
Revises: 0009_deliveries
Create Date: 2026-12-10 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010_retrieval_settings"
down_revision: str | Sequence[str] | None = "0009_deliveries"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing accounts keep what they did: Inbox, unread, every message imported. Plain
    # ADD COLUMN (a constant default), so offline SQL needs no table reflection.
    account = "popaccounts_account"
    op.add_column(account, sa.Column("deliver_to", sa.String(16), nullable=False,
                                     server_default="inbox"))
    op.add_column(account, sa.Column("deliver_folder_id", sa.Integer(), nullable=True))
    op.add_column(account, sa.Column("mark_read", sa.Boolean(), nullable=False,
                                     server_default=sa.false()))
    op.add_column(account, sa.Column("import_only_new", sa.Boolean(), nullable=False,
                                     server_default=sa.false()))
    op.add_column("popaccounts_uidl", sa.Column("seen_only", sa.Boolean(), nullable=False,
                                                server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("popaccounts_uidl") as batch:
        batch.drop_column("seen_only")
    with op.batch_alter_table("popaccounts_account") as batch:
        batch.drop_column("import_only_new")
        batch.drop_column("mark_read")
        batch.drop_column("deliver_folder_id")
        batch.drop_column("deliver_to")
