"""Referrals: each member's code, the friends who enrolled with it, and the rewards both sides
earn once the friend's first order is past its return window."""
