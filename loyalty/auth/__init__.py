"""API keys: who may call the API, with which scopes."""
