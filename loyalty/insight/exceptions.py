"""Why an insight question has no answer yet."""

from loyalty.errors import Conflict


class InsightNotRefreshed(Conflict):
    """No refresh covers what was asked: none has run yet, or the member enrolled after the
    latest one. Running ``loyalty insight refresh`` (or the daily job) answers it."""

    code = "insight_not_refreshed"
    title = "Insight not refreshed"
