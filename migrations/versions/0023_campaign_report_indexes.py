"""campaign report indexes: a rule's awards and a member's orders by time

The return on a campaign (loyalty/reports/campaigns.py) reads every touch of one rule or
automation and, per touched member, the orders placed in a window after each touch.

- ``rule_awards (rule_id, member_id, awarded_at)``: one rule's awards, in the member order the
  join to orders walks; on PostgreSQL they carry the version, points and source, so the
  report reads this index alone (the existing index leads with the member, for caps). An
  automation's firings already have (automation_id, member_id, fired_at).
- ``orders (member_id, placed_at)``: a member's orders within a window, replacing the index on
  member_id alone (its prefix, so every lookup by member is served as before).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02 02:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rule_awards", schema=None) as batch_op:
        batch_op.create_index(
            "ix_rule_awards_rule_id_member_id_awarded_at",
            ["rule_id", "member_id", "awarded_at"],
            unique=False,
            postgresql_include=["rule_version", "points", "source"],
        )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(
            "ix_orders_member_id_placed_at", ["member_id", "placed_at"], unique=False
        )
        batch_op.drop_index("ix_orders_member_id")


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_member_id", ["member_id"], unique=False)
        batch_op.drop_index("ix_orders_member_id_placed_at")
    with op.batch_alter_table("rule_awards", schema=None) as batch_op:
        batch_op.drop_index("ix_rule_awards_rule_id_member_id_awarded_at")
