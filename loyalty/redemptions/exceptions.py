from loyalty.errors import BusinessRuleViolation, Conflict, NotFound


class RedemptionNotFound(NotFound):
    title = "Redemption not found"


class HoldExpired(Conflict):
    code = "hold_expired"
    title = "The hold expired"


class AlreadyReleased(Conflict):
    code = "already_released"
    title = "The hold was released"


class AlreadyCaptured(Conflict):
    code = "already_captured"
    title = "The hold was captured"


class RedemptionInUse(Conflict):
    code = "redemption_already_used"
    title = "The redemption belongs to another order"


class RedemptionMemberMismatch(BusinessRuleViolation):
    code = "redemption_member_mismatch"
    title = "The redemption belongs to another member"


class BelowMinimumRedemption(BusinessRuleViolation):
    code = "below_minimum_redemption"
    title = "Fewer points than the program's minimum redemption"
