"""The HTTP API against a small model of each member's balances.

A hypothesis state machine enrols members and, through the API as the checkout and an admin
call it, places orders with random carts (sometimes paid in part with a hold), refunds them
in part or in full, holds, captures and releases points, adjusts balances both ways, replays
earlier requests, and lets time pass. After every step each member card must show exactly the
model's available, pending and held points, and the whole ledger must verify.

The model is written from the contract, not from the services: one spend rule earns 1 point
per 1.00 paid in money (after the discount and the value paid in points); earned points are
pending for a one-day return window; points never expire; a hold lives 15 minutes; a refund
reverses floor(points x refunded / total) cumulatively and gives back redeemed points alike,
taking reversals from the order's own pending points first and from available points (into
debt if need be) otherwise. Time is a fake clock patched over every `utcnow` the app calls.
"""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from loyalty.auth.services import create_key
from loyalty.db import utcnow as real_utcnow
from loyalty.extensions import db
from loyalty.ledger import verify as ledger_verify
from loyalty.program.services import DEFAULTS
from tests.database import delete_every_row

START = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)
PENDING = dt.timedelta(days=1)
# Each hypothesis example empties the tables on its own connection (delete_every_row).
pytestmark = pytest.mark.committed

HOLD_TTL = dt.timedelta(seconds=DEFAULTS["hold_ttl_seconds"])
MIN_REDEMPTION = DEFAULTS["min_redemption_points"]
MAX_MEMBERS = 3
SKUS = ["tee", "mug", "cap"]

PICK = st.integers(min_value=0, max_value=1000)
# Debits ask for a share (in %) of what is available: often all of it (so that a refund
# reversing spent points leaves a debt), sometimes more.
SHARES = st.one_of(st.just(100), st.integers(1, 120))
LINES = st.lists(
    st.tuples(st.integers(1, 3), st.integers(1, 60).map(lambda n: n * 100 + 50)),
    min_size=1,
    max_size=len(SKUS),
)
STEPS = st.sampled_from(
    [
        dt.timedelta(minutes=1),
        dt.timedelta(minutes=14),
        dt.timedelta(minutes=16),
        dt.timedelta(hours=6),
        dt.timedelta(days=1),
        dt.timedelta(days=3),
    ]
)


class Clock:
    """The time every service sees: it moves only when the machine says so."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass
class ModelHold:
    redemption_id: str
    member: str
    points: int
    expires_at: dt.datetime
    status: str = "held"
    used: bool = False  # paid for an order


@dataclass
class ModelOrder:
    order_id: str
    member: str
    lines: list[tuple[str, int, int]]  # sku, quantity, unit price
    discount: int
    total: int
    points: int
    redeemed: int
    available_at: dt.datetime
    pending: int  # what is left of its points while they wait for the return window
    matured: bool = False
    refunded: int = 0
    refunded_quantity: dict[str, int] = field(default_factory=dict)


@dataclass
class ModelMember:
    external_id: str
    available: int = 0
    held: int = 0


@dataclass
class Sent:
    """A POST answered 2xx that a retry must get again: an order or a refund (exactly once
    by its id), or anything sent with an Idempotency-Key."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    status: int
    answer: Any


def empty_the_database(app: Flask) -> None:
    with app.app_context():
        with db.engine.begin() as connection:
            delete_every_row(connection)
        db.session.remove()


class ApiMachine(RuleBasedStateMachine):
    def __init__(self, app: Flask, clock: Clock) -> None:
        super().__init__()
        self.app = app
        self.client = app.test_client()
        self.clock = clock
        clock.now = START
        empty_the_database(app)
        with app.app_context():
            _, admin = create_key(db.session, "stateful-admin", ("admin",))
            _, checkout = create_key(db.session, "stateful-checkout", ("checkout",))
            db.session.remove()
        self.admin = {"Authorization": f"Bearer {admin}"}
        self.checkout = {"Authorization": f"Bearer {checkout}"}
        self.members: dict[str, ModelMember] = {}
        self.orders: list[ModelOrder] = []
        self.holds: list[ModelHold] = []
        self.sent: list[Sent] = []
        self.serial = 0

    # --- helpers -------------------------------------------------------------------------

    def next_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial}"

    def post(
        self, path: str, body: dict[str, Any], headers: dict[str, str], key: bool = False
    ) -> Any:
        if key:
            headers = {**headers, "Idempotency-Key": str(uuid.uuid4())}
        response = self.client.post(path, json=body, headers=headers)
        assert response.status_code < 500, response.get_data(as_text=True)
        replayable = key or path == "/v1/orders" or path.endswith("/refunds")
        if response.status_code < 300 and replayable:
            self.sent.append(Sent(path, body, headers, response.status_code, response.json))
        return response

    def expect_error(self, response: Any, status: int, code: str) -> None:
        assert (response.status_code, response.json.get("code")) == (status, code), (
            response.status_code,
            response.json,
        )

    def settle(self) -> None:
        """What any request does first: expire holds past their TTL, mature pending points
        past the return window."""
        now = self.clock.now
        for hold in self.holds:
            if hold.status == "held" and hold.expires_at <= now:
                hold.status = "expired"
                member = self.members[hold.member]
                member.held -= hold.points
                member.available += hold.points
        for order in self.orders:
            if not order.matured and order.available_at <= now:
                order.matured = True
                self.members[order.member].available += order.pending
                order.pending = 0

    def pending(self, external_id: str) -> int:
        return sum(o.pending for o in self.orders if o.member == external_id and not o.matured)

    def member(self, pick: int) -> ModelMember:
        names = sorted(self.members)
        return self.members[names[pick % len(names)]]

    # --- rules ---------------------------------------------------------------------------

    @initialize()
    def start_the_program(self):
        response = self.client.patch(
            "/v1/admin/program",
            json={"pending_days": 1, "expiry": {"policy": "never"}},
            headers=self.admin,
        )
        assert response.status_code == 200, response.json
        response = self.client.post(
            "/v1/admin/rules",
            json={"name": "1 point per dollar", "kind": "spend", "points": 1, "per_amount": 100},
            headers=self.admin,
        )
        assert response.status_code == 201, response.json
        self.enrol(opening=3000)

    @precondition(lambda self: len(self.members) < MAX_MEMBERS)
    @rule(opening=st.integers(0, 5000))
    def enrol(self, opening):
        external_id = self.next_id("cust")
        response = self.post("/v1/members", {"external_id": external_id}, self.checkout)
        assert response.status_code == 201, response.json
        self.members[external_id] = ModelMember(external_id)
        if opening:  # points carried over from the shop's old scheme, by an admin
            response = self.post(
                f"/v1/admin/members/{external_id}/adjustments",
                {"points": opening, "reason": "opening balance"},
                self.admin,
            )
            assert response.status_code == 201, response.json
            self.members[external_id].available = opening

    @rule(pick=PICK, added=st.integers(1, 5000), share=SHARES, remove=st.booleans())
    def adjust(self, pick, added, share, remove):
        self.settle()
        member = self.member(pick)
        points = -max(1, member.available * share // 100) if remove else added
        response = self.post(
            f"/v1/admin/members/{member.external_id}/adjustments",
            {"points": points, "reason": "model"},
            self.admin,
        )
        if points < 0 and member.available < -points:
            self.expect_error(response, 422, "insufficient_points")
            return
        assert response.status_code == 201, response.json
        assert response.json["points"] == points
        member.available += points

    @rule(pick=PICK, share=SHARES, small=st.integers(0, 9), key=st.booleans())
    def hold(self, pick, share, small, key):
        self.settle()
        member = self.member(pick)
        # Now and then fewer points than the program's minimum redemption.
        points = (
            MIN_REDEMPTION // 2
            if small == 0
            else max(MIN_REDEMPTION, member.available * share // 100)
        )
        response = self.post(
            "/v1/redemptions",
            {"member_id": member.external_id, "points": points},
            self.checkout,
            key=key,
        )
        if points < MIN_REDEMPTION:
            self.expect_error(response, 422, "below_minimum_redemption")
        elif member.available < points:
            self.expect_error(response, 422, "insufficient_points")
        else:
            assert response.status_code == 201, response.json
            assert (response.json["status"], response.json["points"]) == ("held", points)
            member.available -= points
            member.held += points
            self.holds.append(
                ModelHold(
                    response.json["redemption_id"],
                    member.external_id,
                    points,
                    self.clock.now + HOLD_TTL,
                )
            )

    @precondition(lambda self: self.holds)
    @rule(pick=PICK)
    def capture(self, pick):
        self.settle()
        hold = self.holds[pick % len(self.holds)]
        response = self.post(f"/v1/redemptions/{hold.redemption_id}/capture", {}, self.checkout)
        if hold.status == "expired":
            self.expect_error(response, 409, "hold_expired")
        elif hold.status == "released":
            self.expect_error(response, 409, "already_released")
        else:
            assert response.status_code == 200, response.json
            assert response.json["status"] == "captured"
            if hold.status == "held":
                hold.status = "captured"
                self.members[hold.member].held -= hold.points

    @precondition(lambda self: self.holds)
    @rule(pick=PICK)
    def release(self, pick):
        self.settle()
        hold = self.holds[pick % len(self.holds)]
        response = self.post(f"/v1/redemptions/{hold.redemption_id}/release", {}, self.checkout)
        if hold.status == "expired":
            self.expect_error(response, 409, "hold_expired")
        elif hold.status == "captured":
            self.expect_error(response, 409, "already_captured")
        else:
            assert response.status_code == 200, response.json
            assert response.json["status"] == "released"
            if hold.status == "held":
                hold.status = "released"
                member = self.members[hold.member]
                member.held -= hold.points
                member.available += hold.points

    @rule(pick=PICK, lines=LINES, discount_share=st.integers(0, 50), key=st.booleans())
    def order(self, pick, lines, discount_share, key):
        self.settle()
        self.place_order(self.member(pick), lines, discount_share, None, key)

    @precondition(lambda self: self.holds)
    @rule(pick=PICK, lines=LINES, discount_share=st.integers(0, 50), key=st.booleans())
    def order_paid_with_a_hold(self, pick, lines, discount_share, key):
        self.settle()
        hold = self.holds[pick % len(self.holds)]
        self.place_order(self.members[hold.member], lines, discount_share, hold, key)

    def place_order(
        self,
        member: ModelMember,
        lines: list[tuple[int, int]],
        discount_share: int,
        hold: ModelHold | None,
        key: bool,
    ) -> None:
        cart = [(sku, quantity, price) for sku, (quantity, price) in zip(SKUS, lines, strict=False)]
        subtotal = sum(quantity * price for _, quantity, price in cart)
        discount = subtotal * discount_share // 100
        total = subtotal - discount
        order_id = self.next_id("ord")
        body: dict[str, Any] = {
            "order_id": order_id,
            "member_id": member.external_id,
            "currency": "USD",
            "discount": discount,
            "lines": [
                {"sku": sku, "category": "apparel", "quantity": quantity, "unit_price": price}
                for sku, quantity, price in cart
            ],
        }
        if hold is not None:
            body["redemption_id"] = hold.redemption_id
        response = self.post("/v1/orders", body, self.checkout, key=key)
        refused = self.refusal(hold, total) if hold is not None else None
        if refused is not None:
            self.expect_error(response, *refused)
            return
        redeemed = hold.points if hold is not None else 0
        points = (total - redeemed) // 100
        assert response.status_code == 201, response.json
        assert (response.json["points_earned"], response.json["points_redeemed"]) == (
            points,
            redeemed,
        )
        if hold is not None:
            hold.used = True
            if hold.status == "held":
                hold.status = "captured"
                member.held -= hold.points
        self.orders.append(
            ModelOrder(
                order_id,
                member.external_id,
                cart,
                discount,
                total,
                points,
                redeemed,
                self.clock.now + PENDING,
                pending=points,
            )
        )

    @staticmethod
    def refusal(hold: ModelHold, total: int) -> tuple[int, str] | None:
        """Why a hold cannot pay for an order of `total`, by the contract's checks in order:
        one order per redemption, the share of an order payable in points (1 point = 0.01),
        then the hold's state."""
        if hold.used:
            return 409, "redemption_already_used"
        if hold.points > total * DEFAULTS["max_redemption_percent"] // 100:
            return 422, "redemption_exceeds_limit"
        if hold.status == "expired":
            return 409, "hold_expired"
        if hold.status == "released":
            return 409, "already_released"
        return None

    def refund(self, order: ModelOrder, body: dict[str, Any], amount: int | None) -> None:
        """POST the refund; `amount` is the money it gives back, None when it must be refused."""
        self.settle()
        response = self.post(f"/v1/orders/{order.order_id}/refunds", body, self.checkout)
        if amount is None or order.refunded + amount > order.total:
            self.expect_error(response, 422, "refund_exceeds_order")
            return
        before, after = order.refunded, order.refunded + amount
        reversed_points = order.points * after // order.total - order.points * before // order.total
        restored = order.redeemed * after // order.total - order.redeemed * before // order.total
        assert response.status_code == 201, response.json
        assert (
            response.json["amount"]["amount"],
            response.json["points_reversed"],
            response.json["points_restored"],
        ) == (amount, reversed_points, restored)
        order.refunded = after
        member = self.members[order.member]
        from_pending = 0 if order.matured else min(reversed_points, order.pending)
        order.pending -= from_pending
        member.available -= reversed_points - from_pending
        member.available += restored

    @precondition(lambda self: self.orders)
    @rule(pick=PICK, share=st.integers(1, 120))
    def refund_an_amount(self, pick, share):
        order = self.orders[pick % len(self.orders)]
        amount = max(1, (order.total - order.refunded) * share // 100)
        self.refund(order, {"refund_id": self.next_id("ref"), "amount": amount}, amount)

    @precondition(lambda self: self.orders)
    @rule(pick=PICK)
    def refund_the_rest(self, pick):
        order = self.orders[pick % len(self.orders)]
        left = order.total - order.refunded
        body = {"refund_id": self.next_id("ref"), "amount": max(left, 1)}
        self.refund(order, body, left if left else None)

    @precondition(lambda self: any(not o.discount for o in self.orders))
    @rule(pick=PICK, line=PICK, quantity=st.integers(1, 3))
    def refund_lines(self, pick, line, quantity):
        # Without a discount a line's net amount is its price x quantity: no shares to model.
        undiscounted = [o for o in self.orders if not o.discount]
        order = undiscounted[pick % len(undiscounted)]
        sku, bought, price = order.lines[line % len(order.lines)]
        body = {"refund_id": self.next_id("ref"), "lines": [{"sku": sku, "quantity": quantity}]}
        already = order.refunded_quantity.get(sku, 0)
        fits = already + quantity <= bought and order.refunded + quantity * price <= order.total
        self.refund(order, body, quantity * price if fits else None)
        if fits:
            order.refunded_quantity[sku] = already + quantity

    @precondition(lambda self: self.sent)
    @rule(pick=PICK)
    def send_again(self, pick):
        """A retry: the same request (same ids, same Idempotency-Key) gets the same answer
        and changes nothing."""
        sent = self.sent[pick % len(self.sent)]
        response = self.client.post(sent.path, json=sent.body, headers=sent.headers)
        assert (response.status_code, response.json) == (sent.status, sent.answer)
        if "Idempotency-Key" in sent.headers:
            assert response.headers.get("Idempotent-Replayed") == "true"

    @rule(step=STEPS)
    def time_passes(self, step):
        self.clock.now += step

    # --- after every step ----------------------------------------------------------------

    @invariant()
    def cards_show_the_model(self):
        self.settle()
        for external_id, model in self.members.items():
            response = self.client.get(f"/v1/members/{external_id}", headers=self.checkout)
            assert response.status_code == 200, response.json
            balance = response.json["balance"]
            assert (balance["available"], balance["pending"], balance["held"]) == (
                model.available,
                self.pending(external_id),
                model.held,
            ), external_id

    @invariant()
    def ledger_verifies(self):
        with self.app.app_context():
            report = ledger_verify.verify(db.session)
            db.session.remove()
        assert report.ok, report.problems


def patch_the_clock(monkeypatch, clock: Clock) -> list[str]:
    """Every loyalty module calls `utcnow` through its own imported name: patch them all."""
    patched = []
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] != "loyalty":
            continue
        if getattr(module, "utcnow", None) is real_utcnow:
            monkeypatch.setattr(module, "utcnow", clock)
            patched.append(name)
    return patched


def test_the_api_agrees_with_a_model_of_the_balances(app, monkeypatch):
    clock = Clock()
    patched = patch_the_clock(monkeypatch, clock)
    assert {
        "loyalty.api.orders",
        "loyalty.membership.services",
        "loyalty.orders.refunds",
        "loyalty.orders.services",
        "loyalty.redemptions.services",
        "loyalty.settlement.services",
    } <= set(patched)
    run_state_machine_as_test(
        lambda: ApiMachine(app, clock),
        settings=settings(max_examples=15, stateful_step_count=25, deadline=None),
    )
