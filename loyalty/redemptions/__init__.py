"""Redemptions: two-phase spending. A hold reserves points; capture spends them; release (or
the hold's TTL running out) gives them back."""
