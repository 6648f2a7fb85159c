"""example webmail users

Revision ID: e0001_users
Revises:
Create Date: 2026-11-27 06:55:07.852295
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "e0001_users"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("host",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "example_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=80), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )


def downgrade() -> None:
    op.drop_table("example_user")
