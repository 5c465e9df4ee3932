from loyalty.api import members, orders, program, rules

BLUEPRINTS = (members.blp, members.admin_blp, orders.blp, program.blp, rules.blp)
