"""Webhooks: events written to an outbox with the change that caused them, delivered by a
worker with HMAC-SHA256 signatures and retries."""
