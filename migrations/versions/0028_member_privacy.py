"""member privacy: marketing consent per channel, erasure, and merged duplicates

- ``members.marketing_email`` / ``marketing_sms``: consent to marketing on each channel
  (false for every existing member: nobody consented to what was never asked), with
  ``*_changed_at``, when it was last given or withdrawn.
- ``members.erased_at``: when the member's personal data was erased; their ``external_id``
  is then a pseudonym.
- ``members.merged_into_id``: the member a duplicate was merged into (indexed: a member's
  history and tier read the members merged into them).

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-02 07:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("marketing_email", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("marketing_email_changed_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("marketing_sms", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("marketing_sms_changed_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column(
                "merged_into_id",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                nullable=True,
            )
        )
        batch_op.create_index("ix_members_merged_into_id", ["merged_into_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_members_merged_into_id_members", "members", ["merged_into_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_constraint("fk_members_merged_into_id_members", type_="foreignkey")
        batch_op.drop_index("ix_members_merged_into_id")
        batch_op.drop_column("merged_into_id")
        batch_op.drop_column("erased_at")
        batch_op.drop_column("marketing_sms_changed_at")
        batch_op.drop_column("marketing_sms")
        batch_op.drop_column("marketing_email_changed_at")
        batch_op.drop_column("marketing_email")
