from loyalty.errors import BusinessRuleViolation, Conflict, NotFound


class RewardNotFound(NotFound):
    title = "Reward not found"


class RewardCodeNotFound(NotFound):
    title = "Reward code not found"


class RewardRedemptionNotFound(NotFound):
    title = "Reward redemption not found"


class OutOfStock(BusinessRuleViolation):
    code = "out_of_stock"
    title = "Out of stock"


class RewardUnavailable(BusinessRuleViolation):
    code = "reward_unavailable"
    title = "This member cannot redeem this reward now"


class RewardCodeMemberMismatch(BusinessRuleViolation):
    code = "reward_code_member_mismatch"
    title = "The code belongs to another member"


class RewardCodeUsed(Conflict):
    code = "reward_code_used"
    title = "The code was used"


class RewardCodeExpired(Conflict):
    code = "reward_code_expired"
    title = "The code expired"


class RewardCodeCancelled(Conflict):
    code = "reward_code_cancelled"
    title = "The code's redemption was cancelled"
