"""sending: outgoing SMTP settings on the account, send-as addresses, verification codes

Revision ID: 0003_sending
Revises: 0002_scheduling
Create Date: 2026-11-27 07:45:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003_sending"
down_revision: str | Sequence[str] | None = "0002_scheduling"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS: list[tuple[str, sa.types.TypeEngine[Any], dict[str, Any]]] = [
    ("smtp_host", sa.String(length=253), {"nullable": True}),
    ("smtp_port", sa.Integer(), {"nullable": True}),
    ("smtp_security", sa.String(length=16), {"nullable": True}),
    ("smtp_auth_mode", sa.String(length=16), {"nullable": False, "server_default": "none"}),
    ("smtp_username", sa.String(length=320), {"nullable": True}),
    ("smtp_secret_enc", sa.LargeBinary(), {"nullable": True}),
    ("smtp_verified", sa.Boolean(), {"nullable": False, "server_default": sa.false()}),
]


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy): every backend supports it, offline SQL too.
    for name, type_, kw in _COLUMNS:
        op.add_column("popaccounts_account", sa.Column(name, type_, **kw))
    # (The server defaults fill existing rows; new rows get their values from the models.)

    op.create_table(
        "popaccounts_send_as",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.String(length=255), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verified_by", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["popaccounts_account.id"],
                                name=op.f("fk_popaccounts_send_as_account_id_popaccounts_account"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_popaccounts_send_as")),
        sa.UniqueConstraint("account_id", "kind", "address", name="uq_popaccounts_send_as_addr"),
    )
    op.create_index(op.f("ix_popaccounts_send_as_account_id"), "popaccounts_send_as",
                    ["account_id"], unique=False)
    op.create_index(op.f("ix_popaccounts_send_as_owner_id"), "popaccounts_send_as",
                    ["owner_id"], unique=False)
    op.create_table(
        "popaccounts_verification_code",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("send_as_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.ForeignKeyConstraint(
            ["send_as_id"], ["popaccounts_send_as.id"],
            name=op.f("fk_popaccounts_verification_code_send_as_id_popaccounts_send_as"),
            ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_popaccounts_verification_code")),
    )
    op.create_index(op.f("ix_popaccounts_verification_code_send_as_id"),
                    "popaccounts_verification_code", ["send_as_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_popaccounts_verification_code_send_as_id"),
                  table_name="popaccounts_verification_code")
    op.drop_table("popaccounts_verification_code")
    op.drop_index(op.f("ix_popaccounts_send_as_owner_id"), table_name="popaccounts_send_as")
    op.drop_index(op.f("ix_popaccounts_send_as_account_id"), table_name="popaccounts_send_as")
    op.drop_table("popaccounts_send_as")
    with op.batch_alter_table("popaccounts_account") as batch:
        for name, _type, _kw in reversed(_COLUMNS):
            batch.drop_column(name)
