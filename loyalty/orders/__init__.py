"""Orders and refunds: what the checkout reports, and the points they earn or give back."""
