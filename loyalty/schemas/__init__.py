"""Marshmallow schemas: the shapes of request and response bodies, and so of the OpenAPI
document."""
