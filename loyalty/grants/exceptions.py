from loyalty.errors import Conflict, NotFound


class BulkGrantNotFound(NotFound):
    title = "Bulk grant not found"


class GrantIdReused(Conflict):
    code = "bulk_grant_conflict"
    title = "grant_id reused with a different request"
