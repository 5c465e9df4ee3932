"""Member events (signup, review, referral, birthday, custom) and the points they earn."""
