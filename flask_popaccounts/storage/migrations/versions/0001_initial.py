"""initial schema: accounts, UIDL ledger, message store, settings

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-27 06:50:56.456694
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("popaccounts",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "popaccounts_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("send_from", sa.String(length=320), nullable=False),
        sa.Column("reply_to", sa.String(length=320), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("pop_host", sa.String(length=253), nullable=False),
        sa.Column("pop_port", sa.Integer(), nullable=False),
        sa.Column("pop_security", sa.String(length=16), nullable=False),
        sa.Column("pop_username", sa.String(length=320), nullable=False),
        sa.Column("auth_method", sa.String(length=16), nullable=False),
        sa.Column("secret_enc", sa.LargeBinary(), nullable=True),
        sa.Column("delete_policy", sa.String(length=16), nullable=False),
        sa.Column("delete_after_days", sa.Integer(), nullable=False),
        sa.Column("max_message_size", sa.BigInteger(), nullable=False),
        sa.Column("fetch_interval_minutes", sa.Integer(), nullable=False),
        sa.Column("accept_uidl_reset", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("last_error_code", sa.String(length=40), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=120), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message_count", sa.Integer(), nullable=False),
        sa.Column("bytes_stored", sa.BigInteger(), nullable=False),
        sa.Column("fetched_total", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_popaccounts_account")),
        sa.UniqueConstraint("owner_id", "email", name="uq_popaccounts_account_owner_email"),
    )
    with op.batch_alter_table("popaccounts_account", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_popaccounts_account_next_due_at"), ["next_due_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_popaccounts_account_owner_id"), ["owner_id"], unique=False
        )

    op.create_table(
        "popaccounts_filter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("match_all", sa.Boolean(), nullable=False),
        sa.Column("conditions_json", sa.Text(), nullable=False),
        sa.Column("actions_json", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["popaccounts_account.id"],
            name=op.f("fk_popaccounts_filter_account_id_popaccounts_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_popaccounts_filter")),
    )
    with op.batch_alter_table("popaccounts_filter", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_popaccounts_filter_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "popaccounts_folder",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["popaccounts_account.id"],
            name=op.f("fk_popaccounts_folder_account_id_popaccounts_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_popaccounts_folder")),
        sa.UniqueConstraint("account_id", "name", name="uq_popaccounts_folder_name"),
    )
    with op.batch_alter_table("popaccounts_folder", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_popaccounts_folder_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "popaccounts_signature",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("placement", sa.String(length=16), nullable=False),
        sa.Column("on_new", sa.Boolean(), nullable=False),
        sa.Column("on_reply", sa.Boolean(), nullable=False),
        sa.Column("on_forward", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["popaccounts_account.id"],
            name=op.f("fk_popaccounts_signature_account_id_popaccounts_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_popaccounts_signature")),
        sa.UniqueConstraint("account_id", name=op.f("uq_popaccounts_signature_account_id")),
    )
    op.create_table(
        "popaccounts_template",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["popaccounts_account.id"],
            name=op.f("fk_popaccounts_template_account_id_popaccounts_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_popaccounts_template")),
    )
    with op.batch_alter_table("popaccounts_template", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_popaccounts_template_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "popaccounts_uidl",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("uidl", sa.String(length=70), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("on_server", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["popaccounts_account.id"],
            name=op.f("fk_popaccounts_uidl_account_id_popaccounts_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "uidl", name=op.f("pk_popaccounts_uidl")),
    )
    op.create_table(
        "popaccounts_vacation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("interval_days", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["popaccounts_account.id"],
            name=op.f("fk_popaccounts_vacation_account_id_popaccounts_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_popaccounts_vacation")),
        sa.UniqueConstraint("account_id", name=op.f("uq_popaccounts_vacation_account_id")),
    )
    op.create_table(
        "popaccounts_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("folder_id", sa.Integer(), nullable=False),
        sa.Column("uidl", sa.String(length=70), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at_source", sa.String(length=10), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("from_addr", sa.Text(), nullable=False),
        sa.Column("to_addrs", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("is_read", sa.Boolean(), nullable=False),
        sa.Column("is_flagged", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["popaccounts_account.id"],
            name=op.f("fk_popaccounts_message_account_id_popaccounts_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["folder_id"],
            ["popaccounts_folder.id"],
            name=op.f("fk_popaccounts_message_folder_id_popaccounts_folder"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_popaccounts_message")),
    )
    with op.batch_alter_table("popaccounts_message", schema=None) as batch_op:
        batch_op.create_index(
            "ix_popaccounts_message_listing", ["account_id", "folder_id", "sent_at"], unique=False
        )

    op.create_table(
        "popaccounts_message_chunk",
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["popaccounts_message.id"],
            name=op.f("fk_popaccounts_message_chunk_message_id_popaccounts_message"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_id", "seq", name=op.f("pk_popaccounts_message_chunk")),
    )


def downgrade() -> None:
    op.drop_table("popaccounts_message_chunk")
    with op.batch_alter_table("popaccounts_message", schema=None) as batch_op:
        batch_op.drop_index("ix_popaccounts_message_listing")

    op.drop_table("popaccounts_message")
    op.drop_table("popaccounts_vacation")
    op.drop_table("popaccounts_uidl")
    with op.batch_alter_table("popaccounts_template", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_popaccounts_template_account_id"))

    op.drop_table("popaccounts_template")
    op.drop_table("popaccounts_signature")
    with op.batch_alter_table("popaccounts_folder", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_popaccounts_folder_account_id"))

    op.drop_table("popaccounts_folder")
    with op.batch_alter_table("popaccounts_filter", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_popaccounts_filter_account_id"))

    op.drop_table("popaccounts_filter")
    with op.batch_alter_table("popaccounts_account", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_popaccounts_account_owner_id"))
        batch_op.drop_index(batch_op.f("ix_popaccounts_account_next_due_at"))

    op.drop_table("popaccounts_account")
