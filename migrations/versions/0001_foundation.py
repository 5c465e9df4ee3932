"""foundation: members, ledger, keys, idempotency, program

Revision ID: 0001
Revises:
Create Date: 2026-11-26 06:21:19.948482
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=12), nullable=False),
        sa.Column("scopes", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
        sa.UniqueConstraint("name", name=op.f("uq_api_keys_name")),
    )
    op.create_table(
        "members",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("birthday", sa.Date(), nullable=True),
        sa.Column(
            "referred_by_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["referred_by_id"], ["members.id"], name=op.f("fk_members_referred_by_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_members")),
        sa.UniqueConstraint("external_id", name=op.f("uq_members_external_id")),
    )
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_members_email"), ["email"], unique=False)

    op.create_table(
        "program_settings",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("point_value_points", sa.Integer(), nullable=False),
        sa.Column("point_value_amount", sa.Integer(), nullable=False),
        sa.Column("pending_days", sa.Integer(), nullable=False),
        sa.Column("expiry_policy", sa.String(length=16), nullable=False),
        sa.Column("expiry_months", sa.Integer(), nullable=True),
        sa.Column("hold_ttl_seconds", sa.Integer(), nullable=False),
        sa.Column("max_redemption_percent", sa.Integer(), nullable=False),
        sa.Column("min_redemption_points", sa.Integer(), nullable=False),
        sa.Column("tier_window_months", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("hold_ttl_seconds > 0", name=op.f("ck_program_settings_hold_ttl")),
        sa.CheckConstraint("id = 1", name=op.f("ck_program_settings_single_row")),
        sa.CheckConstraint(
            "max_redemption_percent >= 0 AND max_redemption_percent <= 100",
            name=op.f("ck_program_settings_max_redemption_percent"),
        ),
        sa.CheckConstraint("pending_days >= 0", name=op.f("ck_program_settings_pending_days")),
        sa.CheckConstraint(
            "point_value_points > 0 AND point_value_amount > 0",
            name=op.f("ck_program_settings_point_value"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_program_settings")),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "api_key_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name=op.f("fk_idempotency_keys_api_key_id_api_keys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint("api_key_id", "key", name=op.f("uq_idempotency_keys_api_key_id")),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_keys_locked_at"), ["locked_at"], unique=False
        )

    op.create_table(
        "ledger_transactions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("public_id", sa.Uuid(), nullable=False),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.Column(
            "corrects_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["corrects_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_transactions_corrects_id_ledger_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_ledger_transactions_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transactions")),
        sa.UniqueConstraint("public_id", name=op.f("uq_ledger_transactions_public_id")),
    )
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ledger_transactions_member_id_id", ["member_id", "id"], unique=False
        )

    op.create_table(
        "member_balances",
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("available", sa.BigInteger(), nullable=False),
        sa.Column("pending", sa.BigInteger(), nullable=False),
        sa.Column("held", sa.BigInteger(), nullable=False),
        sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_member_balances_member_id_members")
        ),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_member_balances")),
    )
    with op.batch_alter_table("member_balances", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_member_balances_next_due_at"), ["next_due_at"], unique=False
        )

    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "transaction_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("account", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_ledger_entries_nonzero")),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_ledger_entries_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_entries_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ledger_entries_member_id_account", ["member_id", "account"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_ledger_entries_transaction_id"), ["transaction_id"], unique=False
        )

    op.create_table(
        "point_lots",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "transaction_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "remaining >= 0 AND remaining <= points", name=op.f("ck_point_lots_remaining_bounds")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_point_lots_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_point_lots_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_point_lots")),
    )
    with op.batch_alter_table("point_lots", schema=None) as batch_op:
        batch_op.create_index("ix_point_lots_member_id_state", ["member_id", "state"], unique=False)

    # The program's single settings row, with the defaults a new shop starts from.
    op.execute(
        sa.text(
            "INSERT INTO program_settings (id, currency, point_value_points, point_value_amount,"
            " pending_days, expiry_policy, expiry_months, hold_ttl_seconds,"
            " max_redemption_percent, min_redemption_points, tier_window_months, updated_at)"
            " VALUES (1, 'USD', 100, 100, 14, 'fixed', 12, 900, 50, 100, 12, CURRENT_TIMESTAMP)"
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("point_lots", schema=None) as batch_op:
        batch_op.drop_index("ix_point_lots_member_id_state")

    op.drop_table("point_lots")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_entries_transaction_id"))
        batch_op.drop_index("ix_ledger_entries_member_id_account")

    op.drop_table("ledger_entries")
    with op.batch_alter_table("member_balances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_member_balances_next_due_at"))

    op.drop_table("member_balances")
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_transactions_member_id_id")

    op.drop_table("ledger_transactions")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_locked_at"))

    op.drop_table("idempotency_keys")
    op.drop_table("program_settings")
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_members_email"))

    op.drop_table("members")
    op.drop_table("api_keys")
