"""Tiers and benefits: levels members reach by qualifying points over a rolling window."""
