"""Background work: settling members whose lots or holds fell due, in batches."""
