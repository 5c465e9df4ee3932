"""The points ledger: balanced, append-only transactions, lots, and per-member balances."""
