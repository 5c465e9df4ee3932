"""A/B experiments: deterministic arm assignment and the statistics of their results."""
