"""referrals: every member's referral code, the referrals table, the program's reward settings

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-02 08:30:00
"""

from __future__ import annotations

import secrets
import uuid

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# As loyalty.members.referral_codes has it today (a migration never imports the app's code).
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
BATCH = 5_000

members = sa.table("members", sa.column("id", BIGINT), sa.column("referral_code", sa.String))


def _codes(count: int, taken: set[str]) -> list[str]:
    fresh: list[str] = []
    while len(fresh) < count:
        code = "".join(secrets.choice(ALPHABET) for _ in range(8))
        if code not in taken:
            taken.add(code)
            fresh.append(code)
    return fresh


def _give_every_member_a_code(connection: sa.Connection) -> None:
    taken: set[str] = set()
    last = 0
    while True:
        ids = list(
            connection.execute(
                sa.select(members.c.id)
                .where(members.c.id > last, members.c.referral_code.is_(None))
                .order_by(members.c.id)
                .limit(BATCH)
            ).scalars()
        )
        if not ids:
            return
        connection.execute(
            sa.update(members)
            .where(members.c.id == sa.bindparam("member_id"))
            .values(referral_code=sa.bindparam("code")),
            [
                {"member_id": member_id, "code": code}
                for member_id, code in zip(ids, _codes(len(ids), taken), strict=True)
            ],
        )
        last = ids[-1]


def _record_earlier_referrals(connection: sa.Connection) -> None:
    """Members referred before codes existed (`referred_by`): their referrer was paid at the
    friend's first order, so those with an order are rewarded already."""
    referred_members = sa.table(
        "members",
        sa.column("id", BIGINT),
        sa.column("referred_by_id", BIGINT),
        sa.column("enrolled_at", sa.DateTime(timezone=True)),
    )
    orders = sa.table("orders", sa.column("member_id", BIGINT), sa.column("order_id", sa.String))
    any_order = (
        sa.select(sa.func.min(orders.c.order_id))
        .where(orders.c.member_id == referred_members.c.id)
        .scalar_subquery()
    )
    referred = connection.execute(
        sa.select(
            referred_members.c.id,
            referred_members.c.referred_by_id,
            referred_members.c.enrolled_at,
            any_order,
        ).where(referred_members.c.referred_by_id.is_not(None))
    ).all()
    referrals = sa.table(
        "referrals",
        sa.column("public_id", sa.Uuid()),
        sa.column("referrer_id", BIGINT),
        sa.column("referred_id", BIGINT),
        sa.column("status", sa.String),
        sa.column("order_id", sa.String),
        sa.column("linked_at", sa.DateTime(timezone=True)),
        sa.column("referrer_points", sa.Integer),
        sa.column("friend_points", sa.Integer),
    )
    rows = [
        {
            "public_id": uuid.uuid4(),
            "referrer_id": referrer_id,
            "referred_id": member_id,
            "status": "rewarded" if order_id else "linked",
            "order_id": order_id,
            "linked_at": enrolled_at,
            "referrer_points": 0,
            "friend_points": 0,
        }
        for member_id, referrer_id, enrolled_at, order_id in referred
    ]
    if rows:
        connection.execute(referrals.insert(), rows)


def upgrade() -> None:
    # Left nullable: see Member.referral_code.
    op.add_column("members", sa.Column("referral_code", sa.String(length=32), nullable=True))
    _give_every_member_a_code(op.get_bind())
    op.create_index(op.f("ix_members_referral_code"), "members", ["referral_code"], unique=True)

    with op.batch_alter_table("program_settings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("referral_referrer_points", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("referral_friend_points", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("referral_max_per_period", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("referral_period_days", sa.Integer(), server_default="30", nullable=False)
        )
        batch_op.create_check_constraint(
            op.f("ck_program_settings_referral_points"),
            "referral_referrer_points >= 0 AND referral_friend_points >= 0",
        )
        batch_op.create_check_constraint(
            op.f("ck_program_settings_referral_limit"),
            "(referral_max_per_period IS NULL OR referral_max_per_period >= 0)"
            " AND referral_period_days > 0",
        )

    op.create_table(
        "referrals",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("public_id", sa.Uuid(), nullable=False),
        sa.Column("referrer_id", BIGINT, nullable=False),
        sa.Column("referred_id", BIGINT, nullable=False),
        sa.Column("code", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.String(length=128), nullable=True),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("qualifies_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rewarded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("referrer_points", sa.Integer(), nullable=False),
        sa.Column("friend_points", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.order_id"], name=op.f("fk_referrals_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["referred_id"], ["members.id"], name=op.f("fk_referrals_referred_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["referrer_id"], ["members.id"], name=op.f("fk_referrals_referrer_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referrals")),
        sa.UniqueConstraint("public_id", name=op.f("uq_referrals_public_id")),
        sa.UniqueConstraint("referred_id", name=op.f("uq_referrals_referred_id")),
    )
    op.create_index("ix_referrals_referrer_id_linked_at", "referrals", ["referrer_id", "linked_at"])
    op.create_index("ix_referrals_status_qualifies_at", "referrals", ["status", "qualifies_at"])
    _record_earlier_referrals(op.get_bind())


def downgrade() -> None:
    op.drop_index("ix_referrals_status_qualifies_at", table_name="referrals")
    op.drop_index("ix_referrals_referrer_id_linked_at", table_name="referrals")
    op.drop_table("referrals")
    with op.batch_alter_table("program_settings", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_program_settings_referral_limit"), type_="check")
        batch_op.drop_constraint(op.f("ck_program_settings_referral_points"), type_="check")
        batch_op.drop_column("referral_period_days")
        batch_op.drop_column("referral_max_per_period")
        batch_op.drop_column("referral_friend_points")
        batch_op.drop_column("referral_referrer_points")
    op.drop_index(op.f("ix_members_referral_code"), table_name="members")
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_column("referral_code")
