from loyalty.errors import NotFound


class RuleNotFound(NotFound):
    title = "Rule not found"
