"""Bulk grants: points or a benefit to a list of members or a saved segment, as a job."""
