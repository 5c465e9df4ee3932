"""Hostile input, everywhere: every operation of openapi/openapi.json, every field of its body
(nested objects, array items, free-form maps and an unknown field at each level), every
query parameter, every path parameter and header, each given hostile values that hypothesis
draws. The answer is never a 5xx: a success, or a 4xx as application/problem+json.

The operations come from the document, so a new endpoint is fuzzed as soon as it is
documented (and tests/api/test_openapi.py fails until every route is). A hostile value goes
into an otherwise valid request: the bodies are the document's examples and the table
below, which must name every field of every body (a test fails when one is missing) and must
itself succeed against the seeded data. Path parameters and the ids in bodies point at
seeded rows, so values that pass validation reach the services and the database.

Every example sends each class of hostile value (HOSTILE, IN_URL) to each place that can take
it: a surrogate, a NUL, long text and numbers written as text go where text goes; bounds,
numbers too long to read and numbers JSON cannot carry where numbers go; moments outside UTC
where dates go; wrong types and deep nesting everywhere; what the body's reader must refuse
into each unknown field. Hypothesis draws the value within its class (which surrogate and
where, how many digits, which bound, how deep). Two examples per test: hypothesis's simplest
and one at random, about 20 s of the suite on two workers.

Each request runs in a savepoint rolled back after it, so every one starts from the seeded
rows (an order created by one request never turns the next into a replay), at the cost of
two statements, not a reseed.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Connection
from werkzeug.test import TestResponse

from loyalty.cli.openapi import OPENAPI_FILE
from loyalty.extensions import db
from loyalty.webhooks import services as webhooks
from tests.factories import ApiKeyFactory, auth

DOCUMENT: dict[str, Any] = json.loads(OPENAPI_FILE.read_text())
METHODS = ("get", "put", "post", "patch", "delete")
UNKNOWN = "unknown_field"
# The seeded rows' ids, by the names of the path parameters and body fields they fill.
IDS = (
    "external_id",
    "member_id",
    "code",
    "rule_id",
    "multiplier_id",
    "event_rule_id",
    "reward_id",
    "order_id",
    "redemption_id",
    "webhook_id",
    "delivery_id",
    "segment_key",
    "automation_id",
    "bonus_rule_id",
    "experiment_id",
    "draft_experiment_id",
    "token_id",
    "reward_code",
    "reward_redemption_id",
    "job_id",
    "referral_code",
)
FREE_KEY = "hostile_key"  # the key a hostile value gets in a free-form map (metadata, params)
EXAMPLES = settings(
    max_examples=2,
    deadline=None,
    database=None,
    # Each example sends a request per field and class of value, and the failure names them:
    # shrinking would resend them all again and again for little more.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # the seed is per operation, on purpose
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = DOCUMENT
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    definition: dict[str, Any] = field(repr=False)
    # the path's parameters, shared by its methods
    shared: tuple[dict[str, Any], ...] = field(default=(), repr=False)

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path}"

    def parameters(self, location: str) -> list[dict[str, Any]]:
        every = [resolve(p) for p in [*self.shared, *self.definition.get("parameters", [])]]
        return [p for p in every if p["in"] == location]

    @property
    def body_schema(self) -> dict[str, Any] | None:
        body = self.definition.get("requestBody")
        if body is None:
            return None
        return resolve(body["content"]["application/json"]["schema"])

    @property
    def example(self) -> dict[str, Any] | None:
        body = self.definition.get("requestBody") or {}
        example = body.get("content", {}).get("application/json", {}).get("example")
        return example if isinstance(example, dict) else None

    @property
    def scope(self) -> str:
        """The least powerful scope the operation allows (admin may call everything)."""
        scopes: list[str] = self.definition["x-scopes"]
        return next((s for s in scopes if s != "admin"), "admin")


OPERATIONS = [
    Operation(method, path, definition, tuple(item.get("parameters", ())))
    for path, item in DOCUMENT["paths"].items()
    if path.startswith("/v1/")
    for method, definition in item.items()
    if method in METHODS
]
WITH_BODY = [op for op in OPERATIONS if op.body_schema is not None]

# --- the bodies: valid, and together naming every field -----------------------------------

LINE = {"sku": "mug", "category": "home", "quantity": 1, "unit_price": 1200}
WHEN = {"starts_at": "2025-01-01T00:00:00Z", "ends_at": "2099-01-01T00:00:00+02:00"}
RULE = {
    "name": "Double on mugs",
    "kind": "spend",
    "active": True,
    "priority": 10,
    **WHEN,
    "points": 2,
    "per_amount": 100,
    "conditions": {
        "skus": ["mug"],
        "categories": ["home"],
        "tiers": ["silver"],
        "segments": ["regulars"],
        "min_amount": 100,
        "first_order": False,
    },
    "caps": {"per_order": 1000, "per_member": {"period_days": 30, "count": 5, "points": 5000}},
    "budget": {"period": "week", "points": 5000},
}
MULTIPLIER = {
    "name": "Apparel x1.5",
    "kind": "multiplier",
    "factor": "1.5",
    "budget": {"period": "month", "amount": 10_000},
}
BONUS = {"name": "Win-back gift", "kind": "bonus", "points": 100}
EVENT_RULE = {"name": "Reviews", "kind": "event", "event_type": "review", "points": 50}
REWARD = {
    "name": "$5 off",
    "description": "Five dollars off the next order",
    "kind": "fixed_discount",
    "cost_points": 500,
    "value_amount": 500,
    "stock": 10,
    "min_tier": "silver",
    "segments": ["regulars"],
    "per_member_limit": 2,
    **WHEN,
    "active": True,
}
COUPON = {"name": "Coffee", "kind": "coupon", "cost_points": 100, "codes": ["CAFE-1", "CAFE-2"]}
PERCENT_OFF = {
    "name": "12.5% off",
    "kind": "percent_discount",
    "cost_points": 300,
    "percent_off": "12.5",
    "valid_days": 30,
}
TIER = {
    "code": "gold",
    "name": "Gold",
    "rank": 3,
    "threshold": 5000,
    "retention_months": 12,
    "benefits": [{"code": "points_multiplier", "params": {"factor": "1.5"}}],
}
SEGMENT = {
    "key": "regulars",
    "name": "Regulars",
    "description": "Silver members who buy often",
    "filter": {
        "rfm_segments": ["loyal"],
        "tiers": ["silver"],
        "statuses": ["active"],
        "recency_score": {"min": 2, "max": 5},
        "frequency_score": {"min": 3, "max": 5},
        "monetary_score": {"min": 1, "max": 5},
        "orders": {"min": 2, "max": 100},
        "net_revenue": {"min": 1000, "max": 10_000_000},
        "predicted_value": {"min": 0, "max": 10_000_000},
        "days_since_last_order": {"min": 0, "max": 90},
        "probability_alive": {"min": 0.25, "max": 1},
        "metadata": {"source": "web", "visits": 3, "vip": True},
    },
}
MEMBER_CHANGES = {
    "email": "lin@example.com",
    "name": "Lin",
    "birthday": "1990-05-01",
    "metadata": {"source": "web", "visits": 3, "vip": True, "note": None},
    "consent": {"marketing_email": True, "marketing_sms": False},
}
PROGRAM = {
    "currency": "USD",
    "point_value": {"points": 100, "amount": 100},
    "pending_days": 0,
    "expiry": {"policy": "fixed", "months": 12},
    "hold_ttl_seconds": 900,
    "max_redemption_percent": 50,
    "min_redemption_points": 100,
    "tier_window_months": 12,
    "referral": {
        "referrer_points": 500,
        "friend_points": 250,
        "max_per_period": 10,
        "period_days": 30,
    },
    "time_zone": "UTC",
}


@dataclass(frozen=True)
class Base:
    """A valid body, and the path parameters it is valid for (the seeded ids otherwise)."""

    body: dict[str, Any]
    segments: tuple[tuple[str, str], ...] = ()


def table(ids: dict[str, str]) -> dict[str, list[dict[str, Any] | Base]]:
    """Valid bodies beside the document's examples, by operation: together with them they
    name every field of every body."""
    cart = {"member_id": ids["member_id"], "currency": "USD", "lines": [LINE], "discount": 100}
    # Rules and rewards name live saved segments only: the seeded one.
    segments = [ids["segment_key"]]
    rule = {**RULE, "conditions": {**RULE["conditions"], "segments": segments}}
    reward = {**REWARD, "segments": segments}
    webhook = [{"type": "webhook"}]
    automations: list[dict[str, Any] | Base] = [
        {
            "name": "Time to buy again",
            "active": True,
            "trigger": {
                "kind": "repurchase_due",
                "default_gap_days": 30,
                "factor": "1.5",
                "min_purchase_days": 3,
            },
            "conditions": {
                "tiers": ["silver"],
                "segments": segments,
                "predicted_value": {"min": 0, "max": 100_000},
                "metadata": {"vip": True},
            },
            "actions": [
                {"type": "grant_points", "rule_id": ids["bonus_rule_id"], "points": 10},
                *webhook,
            ],
            "dedup_days": 30,
        },
        {"name": "Welcome", "trigger": {"kind": "enrolled", "delay_days": 0}, "actions": webhook},
        {"name": "Quiet", "trigger": {"kind": "inactive", "days": 60}, "actions": webhook},
        {
            "name": "Expiring",
            "trigger": {"kind": "points_expiring", "within_days": 30},
            "actions": webhook,
        },
        {
            "name": "Tier",
            "trigger": {"kind": "tier_at_risk", "within_days": 30},
            "actions": webhook,
        },
        {
            "name": "In",
            "trigger": {"kind": "segment_entered", "segment": ids["segment_key"]},
            "actions": webhook,
        },
        {
            "name": "Affordable",
            "trigger": {"kind": "reward_affordable", "reward_id": ids["reward_id"]},
            "actions": webhook,
        },
        {
            "name": "Your cart",
            "trigger": {"kind": "cart_abandoned", "after_hours": 4},
            "actions": webhook,
        },
        {
            "name": "Coupon",
            "trigger": {"kind": "enrolled", "delay_days": 7},
            "actions": [
                {"type": "grant_coupon", "reward_id": ids["reward_id"], "expires_in_days": 30},
                *webhook,
            ],
            "budget": {"period": "month", "points": 5000},
        },
        {
            "name": "Benefit",
            "trigger": {"kind": "enrolled", "delay_days": 14},
            "actions": [
                {
                    "type": "grant_benefit",
                    "code": "free_shipping",
                    "params": {"limit": 1},
                    "days": 7,
                },
                {"type": "grant_points", "rule_id": ids["bonus_rule_id"]},
            ],
            "budget": {"period": "day", "amount": 1000},
        },
    ]
    # A draft changes anything but its key; the seeded experiment_id is a stopped one (whose
    # arm "bonus" the document's example promotes).
    draft = (("experiment_id", ids["draft_experiment_id"]),)
    experiments = [
        {
            "name": "Double points",
            "hypothesis": "Double points lift conversion for more than they cost.",
            "target": {"kind": "rules", "rule_ids": [ids["rule_id"], ids["bonus_rule_id"]]},
            "arms": [
                {"key": "control", "weight": 1, "control": True, "rule_ids": [ids["rule_id"]]},
                {"key": "double", "weight": 2, "rule_ids": [ids["rule_id"], ids["bonus_rule_id"]]},
            ],
            "eligibility": {"segments": segments, "tiers": ["silver"], "new_members_only": True},
            **WHEN,
            "margin": "0.35",
        },
        {
            "name": "Free shipping",
            "hypothesis": "Free shipping brings members back.",
            "target": {"kind": "benefit", "code": "free_shipping"},
            "arms": [
                {"key": "holdout", "weight": 1, "control": True, "applies": False},
                {"key": "shipping", "weight": 1, "control": False, "applies": True},
            ],
            **WHEN,
            "margin": "1",
        },
        {
            "name": "Win back",
            "hypothesis": "The win-back automation brings members back.",
            "target": {"kind": "automation", "automation_id": ids["automation_id"]},
            "arms": [
                {"key": "holdout", "weight": 1, "control": True, "applies": False},
                {"key": "fires", "weight": 3, "applies": True},
            ],
            **WHEN,
            "margin": "0",
        },
    ]
    return {
        "POST /v1/admin/experiments": [
            {**experiment, "key": f"experiment-{n}"} for n, experiment in enumerate(experiments)
        ],
        "PATCH /v1/admin/experiments/{experiment_id}": [
            Base(experiment, draft) for experiment in experiments
        ],
        "POST /v1/members": [
            {"external_id": "cust_2001", "referred_by": ids["member_id"], **MEMBER_CHANGES},
            {"external_id": "cust_2002", "referral_code": ids["referral_code"], **MEMBER_CHANGES},
        ],
        "PATCH /v1/admin/members/{external_id}": [{"status": "active", **MEMBER_CHANGES}],
        "POST /v1/admin/members/{external_id}/benefits": [
            {"code": "free_shipping", "params": {"limit": 3}, "reason": "VIP", **WHEN}
        ],
        "PATCH /v1/admin/program": [PROGRAM],
        "POST /v1/admin/rewards": [reward, COUPON, PERCENT_OFF],
        "PATCH /v1/admin/rewards/{reward_id}": [reward, {"codes": ["CAFE-3"]}, PERCENT_OFF],
        "POST /v1/admin/rules": [rule, MULTIPLIER, EVENT_RULE],
        "PATCH /v1/admin/rules/{rule_id}": [
            Base(without_kind(rule)),
            Base(without_kind(MULTIPLIER), (("rule_id", ids["multiplier_id"]),)),
            Base(without_kind(EVENT_RULE), (("rule_id", ids["event_rule_id"]),)),
        ],
        "POST /v1/admin/rules/simulate": [
            {**cart, "rules": [rule, MULTIPLIER], "include_active": True},
            {**cart, "rules": [MULTIPLIER]},
            {**cart, "rules": [EVENT_RULE], "event_type": "review"},
            {"currency": "USD", "member_id": ids["member_id"], "event_type": "review"},
        ],
        "POST /v1/admin/automations": automations,
        "PATCH /v1/admin/automations/{automation_id}": automations,
        "POST /v1/admin/bulk-grants": [
            {
                "reason": "VIP week",
                "benefit": {"code": "free_shipping", "params": {"min": 1}, "days": 7},
                "segment": ids["segment_key"],
            },
            {"reason": "Apology", "points": 10, "csv": f"external_id\n{ids['member_id']}\n"},
        ],
        "POST /v1/admin/segments": [SEGMENT],
        "PATCH /v1/admin/segments/{segment_key}": [
            {key: value for key, value in SEGMENT.items() if key != "key"}
        ],
        "POST /v1/admin/tiers": [TIER],
        "PATCH /v1/admin/tiers/{code}": [{**TIER, "code": ids["code"]}],
        "POST /v1/admin/webhooks": [
            {"url": "https://shop.example/hooks", "event_types": ["*"], "description": "Shop"}
        ],
        "POST /v1/events": [
            {
                "event_id": "review-1",
                "member_id": ids["member_id"],
                "type": "review",
                "occurred_at": "2026-01-01T12:00:00+01:00",
                "attributes": {"stars": 5},
            }
        ],
        "POST /v1/members/{external_id}/reward-redemptions": [{"reward_id": ids["reward_id"]}],
        "POST /v1/reward-codes/validate": [
            {"code": ids["reward_code"], "member_id": ids["member_id"]}
        ],
        "POST /v1/reward-codes/consume": [
            {"code": ids["reward_code"], "member_id": ids["member_id"], "order_id": "ord_2"}
        ],
        "POST /v1/orders": [
            {
                **cart,
                "order_id": "ord_2",
                "redemption_id": ids["redemption_id"],
                "placed_at": "2026-01-01T12:00:00-05:00",
                "earn_points": True,
                "cart_id": "cart_2",
            }
        ],
        "POST /v1/orders/quote": [{**cart, "redeem_points": 100, "cart_id": "cart_2"}],
        "POST /v1/orders/{order_id}/refunds": [{"refund_id": "ref_2", "amount": 100}],
    }


def without_kind(rule: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in rule.items() if key != "kind"}


# Documented fields no valid body can name (hostile values still go there).
NEVER_VALID = {
    # A rule's kind never changes: naming it in a change is refused, even unchanged.
    ("PATCH /v1/admin/rules/{rule_id}", ("kind",)),
}


def base_bodies(operation: Operation, ids: dict[str, str]) -> list[Base]:
    """The document's example (if it has one) and the table's bodies for `operation`."""
    example = [operation.example] if operation.example else []
    listed = example + table(ids).get(str(operation), [])
    return [base if isinstance(base, Base) else Base(base) for base in listed]


# --- where a hostile value can go ----------------------------------------------------------

Path = tuple[str | int, ...]


def object_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The object a schema describes, through $ref, allOf and a nullable anyOf."""
    schema = resolve(schema)
    for combined in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(combined, []):
            option = resolve(option)
            if option.get("properties") or option.get("items"):
                return option
    return schema


ANY = "any"  # what a free-form map (metadata, attributes, params) takes
NONE = "unknown"  # an unknown field: refused whatever it holds, once the body is read


def kind_of(schema: dict[str, Any]) -> str:
    """string, moment, integer, boolean, array or object: what the document says goes there."""
    schema = object_schema(schema)
    if schema.get("format") in ("date", "date-time"):
        return "moment"
    return str(schema.get("type", "object"))


def schema_paths(schema: dict[str, Any], prefix: Path = ()) -> Iterator[tuple[Path, str]]:
    """Every place of a body the schema describes, as (path, kind): each property, each array's
    first item, a key of each free-form map (of kind ANY) and an unknown field in each object
    (NONE)."""
    schema = object_schema(schema)
    if "properties" in schema:
        for name, child in schema["properties"].items():
            yield (*prefix, name), kind_of(child)
            yield from schema_paths(child, (*prefix, name))
        yield (*prefix, UNKNOWN), NONE
    elif schema.get("type") == "object" and isinstance(schema.get("additionalProperties"), dict):
        yield (*prefix, FREE_KEY), ANY
    elif "items" in schema:
        yield from schema_paths(schema["items"], (*prefix, 0))


def value_at(body: Any, path: Path) -> Any:
    for step in path:
        if isinstance(step, int):
            if not isinstance(body, list) or len(body) <= step:
                return None
        elif not isinstance(body, dict) or step not in body:
            return None
        body = body[step]
    return body


def has_container(body: Any, path: Path) -> bool:
    """Whether the object or array `path`'s value goes into is in `body`."""
    parent = value_at(body, path[:-1])
    if isinstance(path[-1], int):
        return isinstance(parent, list) and len(parent) > path[-1]
    return isinstance(parent, dict)


def with_value(body: Any, path: Path, value: Any) -> Any:
    """A copy of `body` with `value` at `path` (whose container is in `body`)."""
    if not path:
        return value
    step, rest = path[0], path[1:]
    copy = list(body) if isinstance(body, list) else dict(body)
    copy[step] = with_value(body[step], rest, value) if rest else value  # type: ignore[index]
    return copy


def targets(operation: Operation, bases: list[Base]) -> list[tuple[Path, str, Base]]:
    """Each place a hostile value goes and its kind, with the first base body that has a
    container for it (and so the field's valid siblings)."""
    assert operation.body_schema is not None
    found = []
    for path, kind in schema_paths(operation.body_schema):
        base = next((b for b in bases if has_container(b.body, path)), None)
        if base is not None:
            found.append((path, kind, base))
    return found


# --- hostile values ------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """JSON text put into a body as it is: what json.dumps cannot write (a number of 5,000
    digits, NaN, nesting deeper than Python recurses)."""

    text: str


def to_json(body: Any) -> str:
    raws: list[str] = []

    def mark(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value.text)
            return f"@@raw{len(raws) - 1}@@"
        if isinstance(value, dict):
            return {key: mark(item) for key, item in value.items()}
        if isinstance(value, list):
            return [mark(item) for item in value]
        return value

    # ensure_ascii writes a lone surrogate as its \ud800 escape, as a hostile client would
    text = json.dumps(mark(body))
    for index, raw in enumerate(raws):
        text = text.replace(f'"@@raw{index}@@"', raw, 1)
    return text


def text_of(valid: Any) -> str:
    return valid if isinstance(valid, str) and valid else "cust_1001"


def inserted(valid: Any, chars: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A valid string (the field's own where it has one) with `chars` put somewhere in it."""
    text = text_of(valid)
    return st.builds(
        lambda char, at: text[:at] + char + text[at:], chars, st.integers(0, len(text))
    )


LONE_SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)
MOMENTS = [
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T05:00:00+06:00",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T20:00:00-05:00",
    # in UTC's range, at its very edges: arithmetic on them must not overflow either
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
    "0000-01-01T00:00:00Z",
    "10000-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-01-01T24:00:00Z",
    "2026-12-31T23:59:60Z",
    "2026-01-01T00:00:00+99:00",
    "2026-01-01T00:00:00",
    "0001-01-01",
    "9999-12-31",
]
NUMBER_TEXT = ["NaN", "sNaN", "-Infinity", "1e999999999", "1e-999999999", "-0", "9" * 5000]
# The first of each list is what hypothesis's simplest example sends: the likeliest to break.
BOUNDS = [
    2**63,
    2**63 - 1,
    -(2**63) - 1,
    2**64,
    10**9 + 1,
    10**12 + 1,
    10**15,
    2**53 + 1,
    2**31,
    10**9,
    10**100,
    0,
    -1,
]


def nested(depth: int, bracket: str) -> Raw:
    if bracket == "[":
        return Raw("[" * depth + "]" * depth)
    return Raw('{"a":' * depth + "1" + "}" * depth)


TEXT = {"string", "moment", ANY}
NUMBER = {"integer", "number", ANY}
EVERY = {"string", "moment", "integer", "number", "boolean", "array", "object", ANY}
# What reading the body itself must refuse, wherever it is.
UNREADABLE = {NONE}


@dataclass(frozen=True)
class Hostile:
    """A class of hostile value: drawn from the place's valid value (or None), and sent where
    it is not merely a wrong type (that is a class of its own)."""

    name: str
    values: Callable[[Any], st.SearchStrategy[Any]]
    kinds: set[str]


HOSTILE = [
    Hostile("lone surrogate", lambda valid: inserted(valid, LONE_SURROGATE), TEXT | UNREADABLE),
    Hostile("NUL", lambda valid: inserted(valid, st.just("\x00")), TEXT | UNREADABLE),
    Hostile(
        "long text",
        lambda valid: st.builds(
            lambda n, char: text_of(valid) + char * n,
            st.integers(129, 20_000),
            st.sampled_from(["a", "é", "\U0001f600", "9"]),
        ),
        TEXT,
    ),
    Hostile("moment outside UTC or invalid", lambda _: st.sampled_from(MOMENTS), {"moment", ANY}),
    Hostile("number as text", lambda _: st.sampled_from(NUMBER_TEXT), TEXT),
    Hostile(
        "integer at a bound",
        lambda _: st.sampled_from(BOUNDS).flatmap(lambda n: st.sampled_from([n, -n])),
        NUMBER,
    ),
    Hostile(
        "number too long to read",
        lambda _: st.builds(
            lambda n, sign: Raw(sign + "9" * n), st.integers(4301, 6000), st.sampled_from(["", "-"])
        ),
        NUMBER | UNREADABLE,
    ),
    Hostile(
        "number JSON cannot carry",
        lambda _: st.sampled_from(
            ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "-0", "1.0", "0.5"]
        ).map(Raw),
        NUMBER | UNREADABLE,
    ),
    Hostile(
        "wrong type",
        lambda valid: st.sampled_from(
            [None, True, False, "", "1", 1, 1.5, [], {}, [valid], {"value": valid}]
        ),
        EVERY,
    ),
    Hostile(
        "deep nesting",
        lambda _: st.builds(
            nested, st.sampled_from([900, 5000, 1200, 50, 2]), st.sampled_from("[{")
        ),
        EVERY | UNREADABLE,
    ),
]

# --- what the requests start from ----------------------------------------------------------


@dataclass
class World:
    """The seeded rows, a key per scope, and a client whose every request is rolled back."""

    app: Flask
    client: FlaskClient
    keys: dict[str, dict[str, str]]
    ids: dict[str, str]

    @contextmanager
    def undone(self) -> Iterator[None]:
        """Roll back whatever the request does (a savepoint in the test's transaction)."""
        connection = db._app_engines[self.app][None]  # the test's connection: see conftest
        assert isinstance(connection, Connection)
        savepoint = connection.begin_nested()
        try:
            yield
        finally:
            savepoint.rollback()

    def send(
        self,
        operation: Operation,
        base: Base | None = None,
        *,
        path: str | None = None,
        query: str = "",
        body: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> TestResponse:
        target = path or self.path_of(operation, **dict(base.segments if base else ()))
        with self.undone():
            return self.client.open(
                target + (f"?{query}" if query else ""),
                method=operation.method.upper(),
                data=body,
                content_type="application/json" if body is not None else None,
                headers={**self.keys[operation.scope], **(headers or {})},
            )

    def path_of(self, operation: Operation, **segments: str) -> str:
        """The operation's path, its parameters the seeded ids unless given (raw, as sent)."""
        path = operation.path
        for parameter in operation.parameters("path"):
            name = parameter["name"]
            path = path.replace(f"{{{name}}}", segments.get(name, self.ids[name]))
        return path


@pytest.fixture
def world(app: Flask, client: FlaskClient) -> World:
    with app.app_context():
        keys = {s: auth(ApiKeyFactory(scopes=(s,))) for s in ("checkout", "app", "admin")}
    admin, checkout = keys["admin"], keys["checkout"]

    def post(path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
        response = client.post(path, json=body, headers=headers)
        assert response.status_code in (200, 201), (path, response.json)
        return response.json

    hook = post("/v1/admin/webhooks", {"url": "https://shop.example/", "event_types": ["*"]}, admin)
    # Its benefit is one an experiment may target.
    silver = {"code": "silver", "name": "Silver", "rank": 1, "threshold": 10}
    post("/v1/admin/tiers", {**silver, "benefits": [{"code": "free_shipping"}]}, admin)
    rule = post(
        "/v1/admin/rules",
        {"name": "1 point per dollar", "kind": "spend", "points": 1, "per_amount": 100},
        admin,
    )
    multiplier = post("/v1/admin/rules", MULTIPLIER, admin)
    event_rule = post("/v1/admin/rules", EVENT_RULE, admin)
    bonus_rule = post("/v1/admin/rules", BONUS, admin)
    reward = post(
        "/v1/admin/rewards",
        {"name": "Free coffee", "kind": "coupon", "cost_points": 100, "stock": 1000},
        admin,
    )
    segment = post("/v1/admin/segments", {**SEGMENT, "key": "seeded"}, admin)
    automation = post(
        "/v1/admin/automations",
        {
            "name": "Win back",
            "trigger": {"kind": "inactive", "days": 60},
            "actions": [{"type": "webhook"}],
        },
        admin,
    )
    experiment = {
        "name": "Free shipping",
        "hypothesis": "Free shipping brings members back.",
        "target": {"kind": "benefit", "code": "free_shipping"},
        "arms": [
            {"key": "holdout", "weight": 1, "control": True, "applies": False},
            {"key": "bonus", "weight": 1, "applies": True},
        ],
        "starts_at": "2025-01-01T00:00:00Z",
        "ends_at": "2099-01-01T00:00:00Z",
        "margin": "0.35",
    }
    draft = post("/v1/admin/experiments", {**experiment, "key": "draft"}, admin)
    stopped = post("/v1/admin/experiments", {**experiment, "key": "stopped"}, admin)
    post(f"/v1/admin/experiments/{stopped['id']}/start", {}, admin)
    post(f"/v1/admin/experiments/{stopped['id']}/stop", {}, admin)
    card = post("/v1/members", {"external_id": "cust_1001"}, checkout)
    member = card["external_id"]
    # The survivor the merge's example merges the member into.
    post("/v1/members", {"external_id": "cust_1002"}, checkout)
    post(
        f"/v1/admin/members/{member}/adjustments",
        {"points": 50_000, "reason": "Opening balance"},
        admin,
    )
    order = post(
        "/v1/orders",
        {"order_id": "ord_1", "member_id": member, "currency": "USD", "lines": [{**LINE}]},
        checkout,
    )
    hold = post("/v1/redemptions", {"member_id": member, "points": 500}, checkout)
    token = post(f"/v1/members/{member}/tokens", {}, keys["app"])
    coffee = post(
        f"/v1/members/{member}/reward-redemptions", {"reward_id": reward["id"]}, keys["app"]
    )
    job = post(
        "/v1/admin/bulk-grants", {"reason": "Hi", "points": 1, "member_ids": [member]}, admin
    )
    with app.app_context():
        webhooks.dispatch(db.session)
    deliveries = client.get(f"/v1/admin/webhooks/{hook['id']}/deliveries", headers=admin).json
    return World(
        app=app,
        client=client,
        keys=keys,
        ids={
            "external_id": member,
            "member_id": member,
            "code": "silver",
            "rule_id": rule["id"],
            "multiplier_id": multiplier["id"],
            "event_rule_id": event_rule["id"],
            "reward_id": reward["id"],
            "order_id": order["order_id"],
            "redemption_id": hold["redemption_id"],
            "webhook_id": hook["id"],
            "delivery_id": deliveries["items"][0]["id"],
            "segment_key": segment["key"],
            "automation_id": automation["id"],
            "bonus_rule_id": bonus_rule["id"],
            "experiment_id": stopped["id"],
            "draft_experiment_id": draft["id"],
            "token_id": token["id"],
            "reward_code": coffee["code"],
            "reward_redemption_id": coffee["id"],
            "job_id": job["id"],
            "referral_code": card["referral_code"],
        },
    )


def answered(response: TestResponse, request: str, code: str | None = None) -> None:
    """Never a 5xx; an error is problem+json with its code (`code` if given)."""
    status = response.status_code
    assert status < 500, f"{status} for {request[:500]}: {response.get_data()[:300]!r}"
    if status >= 400:
        assert response.content_type == "application/problem+json", request[:500]
        assert (response.json or {}).get("code"), request[:500]
    if code is not None:
        assert (response.json or {}).get("code") == code, request[:500]


# --- the operations are the document's ----------------------------------------------------


def as_documented(rule: str) -> str:
    """/v1/orders/<order_id:order_id> as the document writes it: /v1/orders/{order_id}."""
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule)


def test_the_fuzzed_operations_are_every_route_of_the_api(app):
    routed = {
        f"{method} {as_documented(rule.rule)}"
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/v1/")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }

    assert OPERATIONS
    assert WITH_BODY
    assert {str(op) for op in OPERATIONS} == routed


def test_every_operation_with_a_body_has_a_valid_base_body_naming_each_field():
    ids = dict.fromkeys(IDS, "x")
    missing = {}
    for operation in WITH_BODY:
        assert operation.body_schema is not None
        bodies = base_bodies(operation, ids)
        assert bodies, f"{operation}: no example in the document and no entry in table()"
        unnamed = [
            path
            for path, kind in schema_paths(operation.body_schema)
            if kind not in (ANY, NONE)
            and (str(operation), path) not in NEVER_VALID
            and not any(value_at(b.body, path) is not None for b in bodies)
        ]
        if unnamed:
            missing[str(operation)] = unnamed
    assert not missing, f"fields no base body names (add them to table()): {missing}"


# --- the properties ------------------------------------------------------------------------


@pytest.mark.parametrize("operation", WITH_BODY, ids=str)
def test_a_hostile_value_in_any_field_of_a_valid_body_is_never_a_server_error(world, operation):
    bases = base_bodies(operation, world.ids)
    for base in bases:
        response = world.send(operation, base, body=to_json(base.body))
        assert 200 <= response.status_code < 300, ("a base body fails", base, response.json)
    places = targets(operation, bases)

    @EXAMPLES
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        for path, kind, base in places:
            for hostile in HOSTILE:
                if kind not in hostile.kinds:
                    continue
                value = data.draw(hostile.values(value_at(base.body, path)))
                sent = to_json(with_value(base.body, path, value))
                answered(world.send(operation, base, body=sent), f"{operation} {path}: {sent}")

    check()


def encoded(text: str) -> str:
    """Percent-encoded as UTF-8, lone surrogates too (as the bytes a broken encoder sends)."""
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="")


def encoded_inserted(valid: str, chars: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda char, at: encoded(valid[:at]) + char + encoded(valid[at:]),
        chars,
        st.integers(0, len(valid)),
    )


# Each class of hostile value for a query parameter, a path segment or a header, as the
# percent-encoded text sent (a header's is sent as it is), given the valid value.
IN_URL: dict[str, Callable[[str], st.SearchStrategy[str]]] = {
    "lone surrogate": lambda valid: encoded_inserted(valid, LONE_SURROGATE.map(encoded)),
    "NUL": lambda valid: encoded_inserted(valid, st.just("%00")),
    "invalid UTF-8": lambda valid: encoded_inserted(
        valid,
        st.one_of(
            st.sampled_from(["%ED%A0%80", "%C0%80", "%FF", "%C3%28", "%F4%90%80%80", "%E2%82"]),
            st.binary(min_size=1, max_size=6).map(lambda b: urllib.parse.quote(b, safe="")),
        ),
    ),
    "any text": lambda _: st.text(max_size=40).map(lambda t: encoded(t) or "%20"),
    "slash and dots": lambda valid: st.sampled_from(
        [f"{valid}%2F", f"%2F{valid}", "a%2Fb", "%2F", ".", "..", "%2E%2E", "%2e", "%5C", "~"]
    ),
    "broken escape": lambda valid: st.sampled_from([f"{valid}%", "%", "%zz", "%E", "%%", "%u0041"]),
    "long": lambda valid: st.integers(129, 20_000).map(lambda n: valid + "a" * n),
    "number": lambda _: st.one_of(
        st.sampled_from([str(n) for n in BOUNDS] + ["-1", "1.5", "NaN", "-Infinity", "1e400"]),
        st.integers(4301, 6000).map(lambda n: "9" * n),
    ),
    "moment": lambda _: st.sampled_from(MOMENTS).flatmap(
        lambda moment: st.sampled_from([encoded(moment), moment])  # a raw + is a space
    ),
}


def query_of(values: dict[str, str]) -> str:
    return "&".join(f"{name}={value}" for name, value in values.items())


def valid_query(operation: Operation, ids: dict[str, str]) -> dict[str, str]:
    """The required query parameters: a seeded id by name, or the document's example."""
    query = {}
    for parameter in operation.parameters("query"):
        if parameter.get("required"):
            name = parameter["name"]
            query[name] = ids.get(name) or str(parameter["schema"]["example"])
    return query


def test_a_hostile_query_path_segment_or_header_is_never_a_server_error(world):
    @EXAMPLES
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        for operation in OPERATIONS:
            valid = valid_query(operation, world.ids)
            # an operation without query parameters reads no query string
            queries = [p["name"] for p in operation.parameters("query")]
            for name, hostile in IN_URL.items():
                # a lone surrogate is never UTF-8: refused before anything reads the URL
                code = "malformed_url" if name == "lone surrogate" else None
                for parameter in [*queries, UNKNOWN] if queries else []:
                    value = data.draw(hostile(valid.get(parameter, "1")))
                    query = query_of({**valid, parameter: value})
                    answered(world.send(operation, query=query), f"{operation} ?{query}", code)
                if queries:  # a hostile name
                    query = query_of({**valid, data.draw(hostile("name")): "1"})
                    answered(world.send(operation, query=query), f"{operation} ?{query}", code)
                for segment in operation.parameters("path"):
                    value = data.draw(hostile(world.ids[segment["name"]]))
                    path = world.path_of(operation, **{segment["name"]: value})
                    response = world.send(operation, path=path, query=query_of(valid))
                    answered(response, f"{operation} {path}", code)
            for parameter in valid:  # given twice
                query = query_of(valid) + f"&{parameter}={valid[parameter]}"
                answered(world.send(operation, query=query), f"{operation} ?{query}")
            for header in operation.parameters("header"):
                value = data.draw(HEADER_VALUES)
                sent = {header["name"]: value}
                answered(world.send(operation, query=query_of(valid), headers=sent), str(sent))

    check()


# What a header can carry (WSGI gives header values as Latin-1 text), newlines aside.
HEADER_VALUES = st.one_of(
    st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=300),
    st.integers(256, 5000).map(lambda n: "k" * n),
)
