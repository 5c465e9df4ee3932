from loyalty.errors import BusinessRuleViolation, Conflict, NotFound


class MemberNotFound(NotFound):
    title = "Member not found"


class ReferrerNotFound(BusinessRuleViolation):
    code = "referrer_not_found"
    title = "Referrer not found"


class MemberClosed(Conflict):
    code = "member_closed"
    title = "Member is closed"


class MergeIntoItself(BusinessRuleViolation):
    code = "merge_into_itself"
    title = "A member cannot be merged into itself"
