from loyalty.errors import BusinessRuleViolation, Conflict, NotFound


class OrderNotFound(NotFound):
    title = "Order not found"


class OrderConflict(Conflict):
    code = "order_conflict"
    title = "order_id reused with a different order"


class RefundConflict(Conflict):
    code = "refund_conflict"
    title = "refund_id reused with a different refund"


class RefundExceedsOrder(BusinessRuleViolation):
    code = "refund_exceeds_order"
    title = "Refund exceeds the order"


class CurrencyMismatch(BusinessRuleViolation):
    code = "currency_mismatch"
    title = "Currency differs from the program's"


class RedemptionExceedsLimit(BusinessRuleViolation):
    code = "redemption_exceeds_limit"
    title = "Points pay for more of the order than the program allows"
