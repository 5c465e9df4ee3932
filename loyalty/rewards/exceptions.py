from loyalty.errors import BusinessRuleViolation, NotFound


class RewardNotFound(NotFound):
    title = "Reward not found"


class OutOfStock(BusinessRuleViolation):
    code = "out_of_stock"
    title = "Out of stock"


class RewardUnavailable(BusinessRuleViolation):
    code = "reward_unavailable"
    title = "This member cannot redeem this reward now"
