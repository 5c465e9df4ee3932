"""The audit log: every admin write, who made it, and what changed. Append-only."""
