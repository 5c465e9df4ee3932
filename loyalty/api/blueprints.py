from loyalty.api import (
    audit,
    insight,
    members,
    orders,
    program,
    reports,
    rewards,
    rules,
    segments,
    tiers,
    webhooks,
)

BLUEPRINTS = (
    members.blp,
    members.admin_blp,
    orders.blp,
    tiers.blp,
    rewards.blp,
    program.blp,
    rules.blp,
    segments.blp,
    audit.blp,
    reports.blp,
    webhooks.blp,
    insight.blp,
)
