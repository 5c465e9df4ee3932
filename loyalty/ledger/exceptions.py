from loyalty.errors import BusinessRuleViolation


class InsufficientPoints(BusinessRuleViolation):
    code = "insufficient_points"
    title = "Insufficient points"


class MemberInactive(BusinessRuleViolation):
    code = "member_inactive"
    title = "Member is not active"
