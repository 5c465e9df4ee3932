"""Checkout: quotes, orders, refunds, redemption holds and events."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from flask.views import MethodView

from loyalty.api.auth import requires
from loyalty.api.base import Blueprint
from loyalty.db import utcnow
from loyalty.events import services as events
from loyalty.events.services import RecordedEvent, RecordEvent
from loyalty.extensions import db
from loyalty.orders import earning, refunds
from loyalty.orders import services as orders
from loyalty.orders.earning import QuoteCart
from loyalty.orders.refunds import RecordedRefund, RefundOrder
from loyalty.orders.services import PlaceOrder, RecordedOrder
from loyalty.redemptions import services as redemptions
from loyalty.redemptions.services import Hold
from loyalty.schemas.orders import (
    EventInSchema,
    EventSchema,
    OrderInSchema,
    OrderSchema,
    QuoteInSchema,
    QuoteSchema,
    RedemptionInSchema,
    RedemptionSchema,
    RefundInSchema,
    RefundSummarySchema,
)

blp = Blueprint("checkout", __name__, url_prefix="/v1", description="Checkout: points for orders.")

CART_EXAMPLE = {
    "member_id": "cust_1001",
    "currency": "USD",
    "lines": [
        {"sku": "tee-black-m", "category": "apparel", "quantity": 2, "unit_price": 2500},
        {"sku": "mug", "category": "home", "quantity": 1, "unit_price": 1200},
    ],
    "discount": 500,
}


def order_body(order: RecordedOrder, as_of: dt.datetime) -> dict[str, Any]:
    """The order with the status of its points as of `as_of`: a retried POST replays the
    answer as of creation, GET shows the status now."""
    return {
        "order_id": order.order_id,
        "member_id": order.external_id,
        "status": order.points_status(as_of),
        "points_earned": order.points_earned,
        "breakdown": order.breakdown,
        "available_at": order.available_at,
        "total": {"amount": order.total, "currency": order.currency},
        "paid": {"amount": order.total - order.redeemed_value, "currency": order.currency},
        "redemption_id": order.redemption_public_id,
        "points_redeemed": order.redeemed_points,
        "placed_at": order.placed_at,
        "cart_id": order.cart_id,
    }


def refund_body(refund: RecordedRefund) -> dict[str, Any]:
    return {
        "refund_id": refund.refund_id,
        "order_id": refund.order_id,
        "amount": {"amount": refund.amount, "currency": refund.currency},
        "points_reversed": refund.points_reversed,
        "points_restored": refund.points_restored,
        "created_at": refund.created_at,
    }


def redemption_body(hold: Hold) -> dict[str, Any]:
    return {
        "redemption_id": hold.public_id,
        "member_id": hold.external_id,
        "status": hold.status,
        "points": hold.points,
        "value": {"amount": hold.value, "currency": hold.currency},
        "order_id": hold.order_ref,
        "expires_at": hold.expires_at,
        "created_at": hold.created_at,
        "captured_at": hold.captured_at,
        "released_at": hold.released_at,
    }


def event_body(event: RecordedEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "member_id": event.external_id,
        "type": event.type,
        "occurred_at": event.occurred_at,
        "points_earned": event.points_earned,
        "breakdown": event.breakdown,
    }


@blp.route("/orders/quote")
class Quote(MethodView):
    @requires("checkout")
    @blp.arguments(QuoteInSchema, example=CART_EXAMPLE)
    @blp.response(200, QuoteSchema)
    @blp.alt_response(404, description="No such member.")
    @blp.alt_response(422, description="Invalid cart, member_inactive or currency_mismatch.")
    def post(self, cart: QuoteCart) -> dict[str, Any]:
        """Quote a cart: points to earn (per rule) and the most points payable

        No side effects on points. With a `cart_id` the quote records the cart for the
        member (the `cart_abandoned` automation trigger reads it): the first quote's time is
        kept, the last quote's time, total, points and lines replace the previous.
        `max_redeemable_points` respects the member's balance, the program's share of an
        order payable in points and its minimum redemption.
        """
        result = earning.quote(db.session(), cart)
        return {
            "member_id": result.external_id,
            "points_to_earn": result.points_to_earn,
            "breakdown": result.breakdown,
            "available_points": result.available_points,
            "max_redeemable_points": result.max_redeemable_points,
            "max_redeemable_value": {
                "amount": result.max_redeemable_value,
                "currency": result.currency,
            },
        }


@blp.route("/orders")
class Orders(MethodView):
    @requires("checkout")
    @blp.arguments(OrderInSchema, example={**CART_EXAMPLE, "order_id": "ord_5001"})
    @blp.response(201, OrderSchema)
    @blp.alt_response(404, description="No such member.")
    @blp.alt_response(
        409,
        description="order_conflict (order_id reused with another body), or unusable redemption.",
    )
    @blp.alt_response(
        422, description="Invalid order, member_inactive, currency_mismatch, redemption errors."
    )
    def post(self, command: PlaceOrder) -> dict[str, Any]:
        """Record an order and earn its points

        Points are earned on what was paid in money (lines, minus discount, minus the value of
        the points redeemed) and stay pending until the return window ends. Exactly once per
        `order_id`: the same order again returns the first answer.
        """
        order, _ = orders.place_order(db.session(), command)
        return order_body(order, order.created_at)


@blp.route("/orders/<order_id:order_id>")
class OrderResource(MethodView):
    @requires("checkout", "app")
    @blp.response(200, OrderSchema)
    @blp.alt_response(404, description="No such order.")
    def get(self, order_id: str) -> dict[str, Any]:
        """An order and the points it earned"""
        return order_body(orders.find_order(db.session(), order_id), utcnow())


@blp.route("/orders/<order_id:order_id>/refunds")
class Refunds(MethodView):
    @requires("checkout")
    @blp.arguments(
        RefundInSchema, example={"refund_id": "ref_7001", "lines": [{"sku": "mug", "quantity": 1}]}
    )
    @blp.response(201, RefundSummarySchema)
    @blp.alt_response(404, description="No such order.")
    @blp.alt_response(409, description="refund_conflict: refund_id reused with another body.")
    @blp.alt_response(422, description="refund_exceeds_order, or an invalid refund.")
    def post(self, command: RefundOrder, order_id: str) -> dict[str, Any]:
        """Refund part or all of an order

        Reverses the earned points and gives back redeemed points in proportion to the money
        refunded; the refunds of a whole order give back exactly what it earned and redeemed.
        Exactly once per `refund_id`.
        """
        refund, _ = refunds.refund_order(db.session(), order_id, command)
        return refund_body(refund)


@blp.route("/redemptions")
class Redemptions(MethodView):
    @requires("checkout")
    @blp.arguments(
        RedemptionInSchema,
        example={"member_id": "cust_1001", "points": 500, "order_id": "ord_5001"},
    )
    @blp.response(201, RedemptionSchema)
    @blp.alt_response(404, description="No such member.")
    @blp.alt_response(
        422, description="insufficient_points, member_inactive, below_minimum_redemption."
    )
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Hold points for a payment

        Held points are not available to anything else. Capture the hold when payment
        succeeds; a hold not captured within the program's `hold_ttl_seconds` is released by
        itself. Send an Idempotency-Key: a retried hold must not hold twice.
        """
        redemption = redemptions.hold(
            db.session(), body["member_id"], body["points"], body["order_id"]
        )
        return redemption_body(redemption)


@blp.route("/redemptions/<uuid:redemption_id>")
class RedemptionResource(MethodView):
    @requires("checkout", "app")
    @blp.response(200, RedemptionSchema)
    @blp.alt_response(404, description="No such redemption.")
    def get(self, redemption_id: uuid.UUID) -> dict[str, Any]:
        """A redemption and its status"""
        return redemption_body(redemptions.find(db.session(), redemption_id))


@blp.route("/redemptions/<uuid:redemption_id>/capture")
class Capture(MethodView):
    @requires("checkout")
    @blp.response(200, RedemptionSchema)
    @blp.alt_response(404, description="No such redemption.")
    @blp.alt_response(409, description="hold_expired or already_released.")
    def post(self, redemption_id: uuid.UUID) -> dict[str, Any]:
        """Capture a hold: the points are spent (again: the same answer)"""
        return redemption_body(redemptions.capture(db.session(), redemption_id))


@blp.route("/redemptions/<uuid:redemption_id>/release")
class Release(MethodView):
    @requires("checkout")
    @blp.response(200, RedemptionSchema)
    @blp.alt_response(404, description="No such redemption.")
    @blp.alt_response(409, description="already_captured or hold_expired.")
    def post(self, redemption_id: uuid.UUID) -> dict[str, Any]:
        """Release a hold: the points are available again (again: the same answer)"""
        return redemption_body(redemptions.release(db.session(), redemption_id))


@blp.route("/events")
class Events(MethodView):
    @requires("checkout")
    @blp.arguments(
        EventInSchema,
        example={"event_id": "review-8812", "member_id": "cust_1001", "type": "review"},
    )
    @blp.response(201, EventSchema)
    @blp.alt_response(404, description="No such member.")
    @blp.alt_response(409, description="event_conflict: event_id reused with another body.")
    @blp.alt_response(422, description="member_inactive, or an invalid event.")
    def post(self, command: RecordEvent) -> dict[str, Any]:
        """Record a member's event and earn its points

        Points come from the active `event` rules for its type, within their caps, and are
        available at once. Exactly once per `event_id`.
        """
        event, _ = events.record_event(db.session(), command)
        return event_body(event)
