"""Reports for admins: the points liability and daily activity."""
