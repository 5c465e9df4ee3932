"""Earning rules: versioned definitions of how orders and events earn points."""
