from loyalty.errors import NotFound, ValidationFailed


class AutomationNotFound(NotFound):
    pass


class RuleNotGrantable(ValidationFailed):
    """A grant_points action names no active earning rule of kind bonus."""

    code = "rule_not_grantable"
    title = "Rule cannot grant points"
