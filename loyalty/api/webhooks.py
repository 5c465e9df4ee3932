"""Admin: webhook endpoints, their deliveries, redelivery."""

from __future__ import annotations

import uuid
from typing import Any

from flask import current_app
from flask.views import MethodView

from loyalty.api.auth import current_caller, requires
from loyalty.api.base import Blueprint
from loyalty.extensions import db
from loyalty.pagination import cursor_to, position_of
from loyalty.schemas.common import PageQuerySchema
from loyalty.schemas.webhooks import (
    DeliveryPageSchema,
    DeliverySchema,
    WebhookCreatedSchema,
    WebhookInSchema,
    WebhookListSchema,
)
from loyalty.webhooks import endpoints as webhooks
from loyalty.webhooks.endpoints import CreatedWebhook, DeliveryView, NewWebhook, WebhookView

blp = Blueprint(
    "webhooks", __name__, url_prefix="/v1/admin/webhooks", description="Admin: webhooks."
)


def endpoint_body(endpoint: WebhookView) -> dict[str, Any]:
    return {
        "id": endpoint.public_id,
        "url": endpoint.url,
        "event_types": list(endpoint.event_types),
        "description": endpoint.description,
        "created_at": endpoint.created_at,
    }


def created_body(created: CreatedWebhook) -> dict[str, Any]:
    return {**endpoint_body(created.endpoint), "secret": created.secret}


def delivery_body(delivery: DeliveryView) -> dict[str, Any]:
    return {
        "id": delivery.public_id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at,
        "created_at": delivery.created_at,
        "delivered_at": delivery.delivered_at,
    }


@blp.route("")
class Webhooks(MethodView):
    @requires("admin")
    @blp.response(200, WebhookListSchema)
    def get(self) -> dict[str, Any]:
        """The registered webhook endpoints"""
        return {"items": [endpoint_body(e) for e in webhooks.list_endpoints(db.session())]}

    @requires("admin")
    @blp.arguments(
        WebhookInSchema,
        example={
            "url": "https://shop.example/hooks/loyalty",
            "event_types": ["tier.changed", "points.expiring"],
        },
    )
    @blp.response(201, WebhookCreatedSchema)
    def post(self, new: NewWebhook) -> dict[str, Any]:
        """Register an endpoint; the response carries its signing secret, shown only once"""
        allow_local = current_app.config["WEBHOOKS_ALLOW_LOCAL"]
        created = webhooks.create_endpoint(
            db.session(), new, current_caller().name, allow_local=allow_local
        )
        return created_body(created)


@blp.route("/<uuid:webhook_id>")
class Webhook(MethodView):
    @requires("admin")
    @blp.response(204)
    @blp.alt_response(404, description="No such webhook.")
    def delete(self, webhook_id: uuid.UUID) -> None:
        """Stop sending to an endpoint (its delivery log is kept)"""
        webhooks.delete_endpoint(db.session(), webhook_id, current_caller().name)


@blp.route("/<uuid:webhook_id>/deliveries")
class Deliveries(MethodView):
    @requires("admin")
    @blp.arguments(PageQuerySchema, location="query")
    @blp.response(200, DeliveryPageSchema)
    @blp.alt_response(404, description="No such webhook.")
    def get(self, query: dict[str, Any], webhook_id: uuid.UUID) -> dict[str, Any]:
        """The endpoint's deliveries, newest first, each with every attempt"""
        before = position_of(query["cursor"])
        log = webhooks.delivery_log(db.session(), webhook_id, query["limit"], before)
        return {
            "items": [delivery_body(d) for d in log.deliveries],
            "next_cursor": cursor_to(log.next_position),
        }


@blp.route("/<uuid:webhook_id>/deliveries/<uuid:delivery_id>/redeliver")
class Redeliver(MethodView):
    @requires("admin")
    @blp.response(200, DeliverySchema)
    @blp.alt_response(404, description="No such webhook or delivery.")
    def post(self, webhook_id: uuid.UUID, delivery_id: uuid.UUID) -> dict[str, Any]:
        """Send a delivery again (the worker picks it up at once)"""
        delivery = webhooks.redeliver(db.session(), webhook_id, delivery_id, current_caller().name)
        return delivery_body(delivery)
