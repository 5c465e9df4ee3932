from loyalty.errors import Conflict, NotFound


class TierNotFound(NotFound):
    title = "Tier not found"


class TierInUse(Conflict):
    code = "tier_in_use"
    title = "Members are in this tier"


class TierExists(Conflict):
    code = "tier_exists"
    title = "A tier with this code or rank exists"
