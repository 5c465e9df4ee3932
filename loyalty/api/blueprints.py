from loyalty.api import audit, members, orders, program, rewards, rules, tiers

BLUEPRINTS = (
    members.blp,
    members.admin_blp,
    orders.blp,
    tiers.blp,
    rewards.blp,
    program.blp,
    rules.blp,
    audit.blp,
)
