from loyalty.api import members, program

BLUEPRINTS = (members.blp, members.admin_blp, program.blp)
