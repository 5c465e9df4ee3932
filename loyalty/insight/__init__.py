"""Member insight: per-member figures from orders net of refunds, RFM segments, and predicted
lifetime value (BG/NBD and Gamma-Gamma), refreshed into tables."""
