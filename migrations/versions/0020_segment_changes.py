"""segment changes: a log of members entering and leaving saved segments at each insight
refresh (segment_changes), read by the segment_left automation trigger

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 08:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "segment_changes",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("segment_id", BIGINT_PK, nullable=False),
        sa.Column("member_id", BIGINT_PK, nullable=False),
        sa.Column("change", sa.String(length=8), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["segment_id"],
            ["saved_segments.id"],
            name=op.f("fk_segment_changes_segment_id_saved_segments"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_segment_changes_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segment_changes")),
    )
    with op.batch_alter_table("segment_changes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_segment_changes_segment_id_change_changed_at",
            ["segment_id", "change", "changed_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("segment_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_segment_changes_segment_id_change_changed_at")
    op.drop_table("segment_changes")
