from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from loyalty.events.services import RecordEvent
from loyalty.ledger.policy import MAX_POINTS
from loyalty.orders.earning import CartLine, QuoteCart
from loyalty.orders.models import CART_ID_LENGTH, MAX_AMOUNT, RESERVED_ORDER_IDS
from loyalty.orders.refunds import RefundLine, RefundOrder
from loyalty.orders.services import PlaceOrder
from loyalty.schemas.common import EXTERNAL_ID, JSONBoolean, StrictSchema, UTCDateTime

CURRENCY = validate.Regexp(r"^[A-Z]{3}$", error="An ISO 4217 code such as USD.")
REFERENCE = validate.Length(min=1, max=128)


class MoneySchema(ma.Schema):
    class Meta:
        ordered = True

    amount = fields.Integer(required=True, metadata={"description": "Minor units (cents)."})
    currency = fields.String(required=True, metadata={"example": "USD"})


class LineSchema(StrictSchema):
    sku = fields.String(required=True, validate=validate.Length(min=1, max=64))
    category = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=64)
    )
    quantity = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=100000)
    )
    unit_price = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=0, max=MAX_AMOUNT),
        metadata={"description": "Minor units, in the cart's currency."},
    )


def _distinct_skus(lines: list[dict[str, Any]]) -> None:
    skus = [line["sku"] for line in lines]
    if len(skus) != len(set(skus)):
        raise ma.ValidationError("Each sku appears once; sum the quantities.")


def _bounded_total(lines: list[dict[str, Any]]) -> None:
    # Each line is within bounds, but their sum must fit too (and any money column).
    if sum(line["quantity"] * line["unit_price"] for line in lines) > MAX_AMOUNT:
        raise ma.ValidationError(f"The lines may add up to at most {MAX_AMOUNT}.")


class CartSchema(StrictSchema):
    member_id = fields.String(
        required=True, validate=EXTERNAL_ID, metadata={"example": "cust_1001"}
    )
    currency = fields.String(required=True, validate=CURRENCY, metadata={"example": "USD"})
    lines = fields.List(
        fields.Nested(LineSchema),
        required=True,
        validate=[validate.Length(min=1, max=500), _distinct_skus, _bounded_total],
    )
    discount = fields.Integer(
        strict=True,
        load_default=0,
        validate=validate.Range(min=0, max=MAX_AMOUNT),
        metadata={"description": "Order-level discount in minor units."},
    )


def _cart_id(description: str) -> fields.String:
    return fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1, max=CART_ID_LENGTH),
        metadata={"description": description, "example": "cart_8f2c"},
    )


def _cart_lines(data: dict[str, Any]) -> dict[str, Any]:
    """The loaded cart with the names the commands use (the member's external id, typed
    lines)."""
    data["external_id"] = data.pop("member_id")
    data["lines"] = tuple(CartLine(**line) for line in data["lines"])
    return data


class QuoteInSchema(CartSchema):
    redeem_points = fields.Integer(
        strict=True,
        load_default=0,
        validate=validate.Range(min=0, max=MAX_POINTS),
        metadata={"description": "Points the member plans to pay with (they earn nothing)."},
    )
    cart_id = _cart_id(
        "The shop's id of the cart (1-100 characters). The quote then records the cart for "
        "the member (the first quote's time kept, the last quote's time, total, points and "
        "lines replacing the previous), for the cart_abandoned automation trigger. Only with a "
        "member the quote accepts: a refused quote records nothing."
    )

    @ma.post_load
    def _command(self, data: dict[str, Any], **_: Any) -> QuoteCart:
        return QuoteCart(**_cart_lines(data))


class ContributionSchema(ma.Schema):
    class Meta:
        ordered = True

    rule_id = fields.String(required=True)
    version = fields.Integer(required=True)
    name = fields.String(required=True)
    kind = fields.String(required=True)
    points = fields.Integer(required=True)
    budget_withheld = fields.Integer(
        metadata={
            "description": "Present when the rule's budget clipped this award: the points it "
            "withheld (the rule would have given points + budget_withheld)."
        }
    )

    experiment = fields.String(
        metadata={
            "description": "Present when an experiment gave the member this rule: the "
            "experiment's key (see the experiments API)."
        }
    )
    arm = fields.String(
        metadata={"description": "Present with `experiment`: the member's arm in it."}
    )

    @ma.post_dump
    def _optional_only_when_set(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if not data.get("budget_withheld"):
            data.pop("budget_withheld", None)
        for name in ("experiment", "arm"):
            if data.get(name) is None:
                data.pop(name, None)
        return data


class QuoteSchema(ma.Schema):
    class Meta:
        ordered = True

    member_id = fields.String(required=True)
    points_to_earn = fields.Integer(required=True)
    breakdown = fields.List(fields.Nested(ContributionSchema), required=True)
    available_points = fields.Integer(required=True)
    max_redeemable_points = fields.Integer(required=True)
    max_redeemable_value = fields.Nested(MoneySchema, required=True)


class OrderInSchema(CartSchema):
    order_id = fields.String(
        required=True,
        # It names the order in paths (GET /orders/{order_id}, its refunds): the characters
        # of the member ids, so that every order can be read back.
        validate=[EXTERNAL_ID, validate.NoneOf(sorted(RESERVED_ORDER_IDS))],
        # /v1/orders/quote is the quote endpoint's path, never an order's.
        metadata={"example": "ord_5001", "not": {"enum": sorted(RESERVED_ORDER_IDS)}},
    )
    redemption_id = fields.UUID(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "A hold that pays part of this order; captured with it if still held."
        },
    )
    placed_at = UTCDateTime(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "When the order was placed (default: now); any moment in the past, "
            "at most 5 minutes ahead. A past order earns as of then: its points mature and "
            "expire counting from `placed_at`."
        },
    )
    earn_points = JSONBoolean(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "Whether the order earns points. Default: an order placed since "
            "the member's `enrolled_at` (or up to 24 hours before it: a customer who joins at "
            "checkout) earns; an older one is history and earns nothing. `true` earns "
            "whenever it was placed, `false` records the order without points."
        },
    )
    cart_id = _cart_id(
        "The shop's id of the cart this order came from (1-100 characters): the member's "
        "cart quoted under this cart_id, if quoted at or before `placed_at`, was bought, and "
        "the cart_abandoned trigger does not fire for it."
    )

    @ma.post_load
    def _command(self, data: dict[str, Any], **_: Any) -> PlaceOrder:
        data = _cart_lines(data)
        data["redemption_public_id"] = data.pop("redemption_id")
        return PlaceOrder(**data)


class RefundSummarySchema(ma.Schema):
    class Meta:
        ordered = True

    refund_id = fields.String(required=True)
    order_id = fields.String(required=True)
    amount = fields.Nested(MoneySchema, required=True)
    points_reversed = fields.Integer(required=True)
    points_restored = fields.Integer(required=True)
    created_at = UTCDateTime(required=True)


class OrderSchema(ma.Schema):
    class Meta:
        ordered = True

    order_id = fields.String(required=True)
    member_id = fields.String(required=True)
    status = fields.String(
        required=True,
        validate=validate.OneOf(["pending", "available", "none"]),
        metadata={"description": "pending: inside the return window; none: nothing earned."},
    )
    points_earned = fields.Integer(required=True)
    breakdown = fields.List(fields.Nested(ContributionSchema), required=True)
    available_at = UTCDateTime(required=True, allow_none=True)
    total = fields.Nested(MoneySchema, required=True)
    paid = fields.Nested(MoneySchema, required=True, metadata={"description": "Paid in money."})
    cart_id = fields.String(
        required=True, allow_none=True, metadata={"description": "The cart it came from."}
    )
    redemption_id = fields.UUID(required=True, allow_none=True)
    points_redeemed = fields.Integer(required=True)
    placed_at = UTCDateTime(required=True)


class RefundLineSchema(StrictSchema):
    sku = fields.String(required=True, validate=validate.Length(min=1, max=64))
    quantity = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=100000)
    )


class RefundInSchema(StrictSchema):
    refund_id = fields.String(required=True, validate=REFERENCE, metadata={"example": "ref_7001"})
    lines = fields.List(
        fields.Nested(RefundLineSchema), validate=[validate.Length(min=1, max=500), _distinct_skus]
    )
    amount = fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=MAX_AMOUNT),
        metadata={"description": "Money refunded, in minor units (instead of lines)."},
    )

    @ma.validates_schema
    def _lines_or_amount(self, data: dict[str, Any], **_: Any) -> None:
        if ("lines" in data) == ("amount" in data):
            raise ma.ValidationError("Give either lines or amount.", "_schema")

    @ma.post_load
    def _command(self, data: dict[str, Any], **_: Any) -> RefundOrder:
        lines = data.get("lines")
        return RefundOrder(
            refund_id=data["refund_id"],
            lines=tuple(RefundLine(**line) for line in lines) if lines is not None else None,
            amount=data.get("amount"),
        )


class RedemptionInSchema(StrictSchema):
    member_id = fields.String(
        required=True, validate=EXTERNAL_ID, metadata={"example": "cust_1001"}
    )
    points = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=MAX_POINTS)
    )
    order_id = fields.String(load_default=None, allow_none=True, validate=REFERENCE)


class RedemptionSchema(ma.Schema):
    class Meta:
        ordered = True

    redemption_id = fields.UUID(required=True)
    member_id = fields.String(required=True)
    status = fields.String(
        required=True, validate=validate.OneOf(["held", "captured", "released", "expired"])
    )
    points = fields.Integer(required=True)
    value = fields.Nested(MoneySchema, required=True)
    order_id = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "The order the redemption paid for, once an order named it; "
            "until then the reference the hold was given, if any."
        },
    )
    expires_at = UTCDateTime(required=True)
    created_at = UTCDateTime(required=True)
    captured_at = UTCDateTime(required=True, allow_none=True)
    released_at = UTCDateTime(required=True, allow_none=True)


class EventInSchema(StrictSchema):
    event_id = fields.String(
        required=True, validate=validate.Length(min=1, max=200), metadata={"example": "review-8812"}
    )
    member_id = fields.String(required=True, validate=EXTERNAL_ID)
    type = fields.String(
        required=True,
        validate=validate.Regexp(r"^[a-z][a-z0-9_]{0,63}$"),
        metadata={"example": "review"},
    )
    occurred_at = UTCDateTime(load_default=None, allow_none=True)
    attributes = fields.Dict(
        keys=fields.String(validate=validate.Length(max=40)), load_default=dict
    )

    @ma.post_load
    def _command(self, data: dict[str, Any], **_: Any) -> RecordEvent:
        data["external_id"] = data.pop("member_id")
        return RecordEvent(**data)


class EventSchema(ma.Schema):
    class Meta:
        ordered = True

    event_id = fields.String(required=True)
    member_id = fields.String(required=True)
    type = fields.String(required=True)
    occurred_at = UTCDateTime(required=True)
    points_earned = fields.Integer(required=True)
    breakdown = fields.List(fields.Nested(ContributionSchema), required=True)
