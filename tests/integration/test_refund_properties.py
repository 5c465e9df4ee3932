"""Refunds never create or destroy points.

Hypothesis draws orders (random lines, discount, an optional redemption paying part of it,
placed now or past the return window) and random sequences of partial refunds by lines and
by amount. After every step a simple model predicts the member's balance, the refunds so far
have given back exactly floor(earned * refunded / total) and floor(redeemed * refunded /
total), never more than the order earned and redeemed, and the whole ledger verifies. A
refund of everything gives back exactly everything.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty.db import utcnow
from loyalty.ledger import verify as ledger_verify
from loyalty.ledger.models import MemberBalance
from loyalty.members import lookup
from loyalty.membership import adjustments
from loyalty.orders import refunds
from loyalty.orders import services as orders
from loyalty.orders.exceptions import RefundExceedsOrder
from loyalty.redemptions import services as redemptions
from loyalty.settlement import services as settlement
from tests.commands import order_command, refund_command
from tests.factories import MemberFactory, RuleFactory

GIFT = 10_000  # available points every member starts with
RULES = [  # as RuleFactory traits and fields
    {},
    {"multiplier": True, "name": "Category a x1.5", "conditions": {"categories": ["a"]}},
    {"bonus": True, "name": "Big basket", "points": 25, "conditions": {"min_amount": 3000}},
]

line_strategy = st.fixed_dictionaries(
    {
        "category": st.sampled_from(["a", "b", None]),
        "quantity": st.integers(min_value=1, max_value=5),
        "unit_price": st.integers(min_value=0, max_value=5000),
    }
)


@dataclass
class Model:
    """What the member should have, from what the order and its refunds reported."""

    total: int
    earned: int
    redeemed: int
    matured: bool
    quantities: dict[str, int]
    nets: dict[str, int]
    refunded: int = 0
    reversed: int = 0
    restored: int = 0
    refunded_units: dict[str, int] = field(default_factory=dict)

    def expected_balance(self) -> dict[str, int]:
        kept = self.earned - self.reversed
        spendable = GIFT - self.redeemed + self.restored
        if self.matured:
            return {"available": spendable + kept, "pending": 0, "held": 0}
        return {"available": spendable, "pending": kept, "held": 0}

    def line_refund_amount(self, sku: str, quantity: int) -> int:
        """Money a refund of `quantity` more units of `sku` gives back: the line's net amount
        floored cumulatively per unit, so refunding every unit gives back all of it."""
        before = self.refunded_units.get(sku, 0)
        after = before + quantity
        net, units = self.nets[sku], self.quantities[sku]
        return net * after // units - net * before // units


def balance_of(session, external_id: str) -> dict[str, int]:
    session.expire_all()
    member = lookup.find_member(session, external_id)
    found = settlement.settled_balance(session, member)
    return {"available": found.available, "pending": found.pending, "held": found.held}


def check(session, model: Model, order_id: str, external_id: str) -> None:
    session.expire_all()
    order = orders.find_order(session, order_id)
    assert 0 <= order.points_reversed <= order.points_earned
    assert 0 <= order.points_restored <= order.redeemed_points
    assert order.points_reversed == model.reversed
    assert order.points_restored == model.restored
    if model.total:
        assert model.reversed == model.earned * model.refunded // model.total
        assert model.restored == model.redeemed * model.refunded // model.total
    assert balance_of(session, external_id) == model.expected_balance()
    report = ledger_verify.verify(session)
    assert report.ok, report.problems


def apply(session, model, order_id, refund_id, fields, expected_amount) -> None:
    """Refund and update the model, or, past the order's total, expect a refusal that
    changes nothing."""
    if model.refunded + expected_amount > model.total:
        with pytest.raises(RefundExceedsOrder):
            refunds.refund_order(
                session, order_id, refund_command({"refund_id": refund_id, **fields})
            )
        return
    refund, created = refunds.refund_order(
        session, order_id, refund_command({"refund_id": refund_id, **fields})
    )
    assert created
    assert refund.amount == expected_amount
    model.refunded += refund.amount
    model.reversed += refund.points_reversed
    model.restored += refund.points_restored
    for line in fields.get("lines", []):
        model.refunded_units[line["sku"]] = (
            model.refunded_units.get(line["sku"], 0) + line["quantity"]
        )


@pytest.fixture
def earning_rules(session):
    for rule in RULES:
        RuleFactory(**rule)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), raw_lines=st.lists(line_strategy, min_size=1, max_size=4))
def test_refunds_never_create_or_destroy_points(session, earning_rules, data, raw_lines):
    external_id = f"m_{uuid.uuid4().hex[:12]}"
    MemberFactory(external_id=external_id)
    adjustments.adjust(session, external_id, GIFT, "starting points", None)

    lines = [{"sku": f"sku{n}", **line} for n, line in enumerate(raw_lines)]
    subtotal = sum(line["quantity"] * line["unit_price"] for line in lines)
    discount = data.draw(st.integers(min_value=0, max_value=subtotal), label="discount")
    total = subtotal - discount
    matured = data.draw(st.booleans(), label="placed past the return window")

    redemption_id = None
    payable = total * 50 // 100  # the program's max_redemption_percent; 100 points = 1.00
    if payable >= 100 and data.draw(st.booleans(), label="pays with points"):
        most = min(payable, GIFT)
        points = data.draw(st.integers(min_value=100, max_value=most), label="points")
        redemption_id = redemptions.hold(session, external_id, points).public_id

    order_id = f"o_{uuid.uuid4().hex[:12]}"
    order, created = orders.place_order(
        session,
        order_command(
            {
                "order_id": order_id,
                "member_id": external_id,
                "currency": "USD",
                "lines": lines,
                "discount": discount,
                "redemption_id": redemption_id,
                "placed_at": utcnow() - dt.timedelta(days=20) if matured else None,
            }
        ),
    )
    assert created
    assert order.total == total
    assert sum(line["net_amount"] for line in order.lines) == total
    model = Model(
        total=total,
        earned=order.points_earned,
        redeemed=order.redeemed_points,
        matured=matured,
        quantities={line["sku"]: line["quantity"] for line in lines},
        nets={line["sku"]: line["net_amount"] for line in order.lines},
    )
    check(session, model, order_id, external_id)

    steps = data.draw(st.integers(min_value=0, max_value=4), label="partial refunds")
    for step in range(steps):
        left = {
            sku: units - model.refunded_units.get(sku, 0)
            for sku, units in model.quantities.items()
            if units > model.refunded_units.get(sku, 0)
        }
        by_lines = data.draw(st.booleans(), label="by lines") if left else False
        if by_lines:
            skus = data.draw(
                st.lists(st.sampled_from(sorted(left)), min_size=1, unique=True), label="skus"
            )
            refund_lines = [
                {"sku": sku, "quantity": data.draw(st.integers(1, left[sku]), label=sku)}
                for sku in skus
            ]
            amount = sum(model.line_refund_amount(r["sku"], r["quantity"]) for r in refund_lines)
            apply(session, model, order_id, f"{order_id}-r{step}", {"lines": refund_lines}, amount)
        elif model.refunded < model.total:
            amount = data.draw(st.integers(1, model.total - model.refunded), label="amount")
            apply(session, model, order_id, f"{order_id}-r{step}", {"amount": amount}, amount)
        check(session, model, order_id, external_id)

    if data.draw(st.booleans(), label="refund the rest"):
        if not model.refunded_units and model.refunded == 0 and data.draw(st.booleans()):
            every_unit = [{"sku": sku, "quantity": n} for sku, n in model.quantities.items()]
            apply(session, model, order_id, f"{order_id}-rest", {"lines": every_unit}, total)
        elif model.refunded < model.total:
            rest = model.total - model.refunded
            apply(session, model, order_id, f"{order_id}-rest", {"amount": rest}, rest)
        check(session, model, order_id, external_id)
        if model.refunded == model.total:
            stored = orders.order_by_id(session, order.order_id)
            assert stored.points_reversed == stored.points_earned
            assert stored.points_restored == stored.redeemed_points
            assert balance_of(session, external_id) == {
                "available": GIFT,
                "pending": 0,
                "held": 0,
            }
    assert session.get(MemberBalance, lookup.find_member(session, order.external_id).id).held == 0
