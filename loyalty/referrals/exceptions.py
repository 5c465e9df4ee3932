from loyalty.errors import BusinessRuleViolation


class ReferralCodeNotFound(BusinessRuleViolation):
    code = "referral_code_not_found"
    title = "Referral code not found"


class SelfReferral(BusinessRuleViolation):
    code = "self_referral"
    title = "A member cannot refer themselves"
