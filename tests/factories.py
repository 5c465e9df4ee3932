"""factory-boy factories. ``build()`` gives the body a client would send (to post it over
HTTP); ``create()`` (calling the factory) makes the thing through the real service, so every
member has the balance row that writes lock, every rule a version, every order its points.

Traits name the program the tests talk about: ``RuleFactory(review=True)``,
``TierFactory.build(gold=True)``, ``OrderFactory(worth=600)``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import factory

from loyalty.auth.services import create_key
from loyalty.extensions import db
from loyalty.members.lookup import find_member
from loyalty.members.models import Member
from loyalty.membership.services import enroll
from loyalty.orders import services as orders
from loyalty.orders.services import RecordedOrder
from loyalty.redemptions import services as redemptions
from loyalty.redemptions.services import Hold
from loyalty.rules import services as rules
from loyalty.rules.services import RuleView
from loyalty.tiers import definitions as tier_definitions
from loyalty.tiers.definitions import DefinedTier
from tests.commands import enrollment, order_command, rule_definition, tier_definition

TEE = {"sku": "tee", "category": "apparel", "quantity": 2, "unit_price": 2500}
MUG = {"sku": "mug", "category": "home", "quantity": 1, "unit_price": 1200}
FREE_SHIPPING = {"code": "free_shipping", "params": {}}


def body(**fields: Any) -> dict[str, Any]:
    """The request body: a field a trait leaves at None is not sent at all."""
    return {name: value for name, value in fields.items() if value is not None}


class MemberFactory(factory.Factory):
    class Meta:
        model = body

    external_id = factory.Sequence(lambda n: f"cust_{n:05d}")
    email = factory.LazyAttribute(lambda o: f"{o.external_id}@example.com")
    name = factory.Faker("name")
    # Consented to email marketing, so automations' webhooks reach them unless a test says.
    consent = factory.LazyFunction(lambda: {"marketing_email": True})
    now = None  # create() only: when the member enrolled (orders placed before earn nothing)

    class Params:
        # The one member most tests talk about, enrolled with nothing but its id.
        c1 = factory.Trait(external_id="c1", email=None, name=None)

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Member:
        now = kwargs.pop("now")
        card, _ = enroll(db.session, enrollment(model_class(**kwargs)), now=now)
        return find_member(db.session, card.external_id)


class RuleFactory(factory.Factory):
    """An earning rule as the API takes it; by default the program's base rule, 1 point per
    1.00 spent."""

    class Meta:
        model = body

    name = "1 point per dollar"
    kind = "spend"
    points = 1
    per_amount = 100
    factor = None
    event_type = None
    conditions = None
    caps = None
    budget = None

    class Params:
        multiplier = factory.Trait(
            name="Apparel x1.5",
            kind="multiplier",
            points=None,
            per_amount=None,
            factor="1.5",
            conditions=factory.LazyFunction(lambda: {"categories": ["apparel"]}),
        )
        bonus = factory.Trait(
            name="Welcome",
            kind="bonus",
            points=200,
            per_amount=None,
            conditions=factory.LazyFunction(lambda: {"first_order": True}),
        )
        review = factory.Trait(
            name="Review", kind="event", points=25, per_amount=None, event_type="review"
        )
        referral = factory.Trait(review=True, name="Referral", event_type="referral", points=500)

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> RuleView:
        return rules.create_rule(db.session, rule_definition(model_class(**kwargs)), actor=None)


class TierFactory(factory.Factory):
    """A tier as the API takes it. The traits are the tier tests' program (the table in
    tests/api/tier_calls.py)."""

    class Meta:
        model = body

    code = "silver"
    name = "Silver"
    rank = 1
    threshold = 100
    retention_months = None
    benefits = None

    class Params:
        silver = factory.Trait(retention_months=12)
        gold = factory.Trait(
            code="gold",
            name="Gold",
            rank=2,
            threshold=500,
            retention_months=6,
            benefits=factory.LazyFunction(lambda: [dict(FREE_SHIPPING)]),
        )
        platinum = factory.Trait(
            code="platinum",
            name="Platinum",
            rank=3,
            threshold=2000,
            retention_months=3,
            benefits=factory.LazyFunction(
                lambda: [
                    dict(FREE_SHIPPING),
                    {"code": "points_multiplier", "params": {"factor": "2"}},
                ]
            ),
        )

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> DefinedTier:
        return tier_definitions.create_tier(db.session, tier_definition(model_class(**kwargs)))


class OrderFactory(factory.Factory):
    """An order as the checkout sends it: by default order o1 of member c1, 2 tees at 25.00
    and a mug at 12.00 (62.00). ``worth=`` makes it one tee at that many dollars instead."""

    class Meta:
        model = body

    class Params:
        worth = None
        # The line as the tiers' service-level orders send it: no category.
        uncategorised = False

    now = None  # create() only: the moment the service places it at, not part of the body
    order_id = "o1"
    member_id = "c1"
    currency = "USD"
    lines = factory.LazyAttribute(
        lambda o: (
            [dict(TEE), dict(MUG)]
            if o.worth is None
            else [
                body(
                    sku="tee",
                    category=None if o.uncategorised else "apparel",
                    quantity=1,
                    unit_price=o.worth * 100,
                )
            ]
        )
    )

    @classmethod
    def _create(
        cls, model_class: Any, *args: Any, now: dt.datetime | None = None, **kwargs: Any
    ) -> RecordedOrder:
        order, _ = orders.place_order(db.session, order_command(model_class(**kwargs)), now=now)
        return order


class HoldFactory(factory.Factory):
    """A redemption hold: `points` of member c1's available points."""

    class Meta:
        model = body

    now = None  # create() only: when it was made (its TTL may have run out since)
    member_id = "c1"
    points = 100

    @classmethod
    def _create(
        cls, model_class: Any, *args: Any, now: dt.datetime | None = None, **kwargs: Any
    ) -> Hold:
        fields = model_class(**kwargs)
        return redemptions.hold(db.session, fields["member_id"], fields["points"], now=now)


class ApiKeyFactory(factory.Factory):
    """Creates a key and returns the raw secret (what a client sends)."""

    class Meta:
        model = dict

    name = factory.Sequence(lambda n: f"key-{n}")
    scopes = ("admin",)

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> str:
        _, raw = create_key(db.session, kwargs["name"], kwargs["scopes"])
        return raw


def auth(raw_key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw_key}", **headers}
