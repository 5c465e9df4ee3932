"""Bulk import for shops moving from another loyalty system: members, then their balances."""
