"""The cart_abandoned trigger: a cart the checkout quoted for a member under a cart_id, with
no order naming it, fires once its last quote is `after_hours` old; once per cart (its
first quote is the dedup key), on the test's clock, never for closed or suspended members,
and once when two workers fire at the same moment."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from loyalty.automations import firing, services
from loyalty.automations.definitions import AutomationDefinition, check_definition
from loyalty.automations.models import AutomationFiring
from loyalty.db import utcnow
from loyalty.errors import ValidationFailed
from loyalty.extensions import db
from loyalty.ledger.exceptions import MemberInactive
from loyalty.members.exceptions import MemberNotFound
from loyalty.members.models import MemberStatus
from loyalty.membership import services as membership
from loyalty.membership.services import MemberChanges
from loyalty.orders import earning, refunds
from loyalty.orders.models import QuotedCart
from loyalty.schemas.automations import AutomationInSchema, TriggerDetailsSchema
from loyalty.webhooks.models import OutboxEvent
from tests.commands import quote_command, refund_command
from tests.concurrency import race, raised
from tests.factories import MUG, TEE, ApiKeyFactory, MemberFactory, OrderFactory, RuleFactory
from tests.helpers import services as services_session
from tests.integration.test_automations import DAY, T0, automation, fired, run
from tests.integration.test_console_security import sign_in

HOUR = dt.timedelta(hours=1)
AFTER_4_HOURS = {"kind": "cart_abandoned", "after_hours": 4}


def quote(
    session: Any, cart_id: str | None, now: dt.datetime, member_id: str = "c1", **body: Any
) -> earning.Quote:
    """The checkout's quote of member c1's cart (two tees and a mug, 62.00) at `now`."""
    fields = {"member_id": member_id, "currency": "USD", "lines": [TEE, MUG], **body}
    if cart_id is not None:
        fields["cart_id"] = cart_id
    return earning.quote(session, quote_command(fields), now=now)


def carts(session: Any) -> list[QuotedCart]:
    return list(session.scalars(sa.select(QuotedCart).order_by(QuotedCart.id)))


@pytest.fixture
def shopper(session: Any) -> None:
    """Member c1, enrolled well before T0, under the program's 1 point per 1.00."""
    RuleFactory()
    MemberFactory(c1=True, now=T0 - 60 * DAY)


# --- recording the cart -----------------------------------------------------------------------


def test_a_quote_with_a_cart_id_records_the_cart(session, shopper):
    quote(session, "cart-1", T0, discount=200)

    [cart] = carts(session)
    assert (cart.cart_id, cart.first_quoted_at, cart.quoted_at) == ("cart-1", T0, T0)
    assert (cart.amount, cart.currency, cart.points_to_earn) == (6000, "USD", 60)
    assert cart.items == [TEE, MUG]


def test_quoting_the_cart_again_keeps_its_first_quote_and_takes_the_rest(session, shopper):
    quote(session, "cart-1", T0)
    quote(session, "cart-1", T0 + HOUR, lines=[MUG])

    [cart] = carts(session)
    assert (cart.first_quoted_at, cart.quoted_at) == (T0, T0 + HOUR)
    assert (cart.amount, cart.points_to_earn, cart.items) == (1200, 12, [MUG])


def test_the_same_cart_id_is_a_cart_of_each_member(session, shopper):
    MemberFactory(external_id="c2", now=T0 - DAY)
    quote(session, "cart-1", T0)
    quote(session, "cart-1", T0 + HOUR, member_id="c2")

    assert [(c.cart_id, c.first_quoted_at) for c in carts(session)] == [
        ("cart-1", T0),
        ("cart-1", T0 + HOUR),
    ]


@contextmanager
def counted_statements() -> Iterator[list[str]]:
    """The SQL statements sent while inside (on any engine)."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)


def test_a_cart_id_costs_the_quote_one_statement(session, shopper):
    quote(session, None, T0)  # caches warmed (the program, the rules)
    with counted_statements() as without:
        quote(session, None, T0)
    with counted_statements() as with_cart:
        quote(session, "cart-1", T0)

    assert len(with_cart) == len(without) + 1
    writes = [
        s
        for s in with_cart
        if not s.lstrip().upper().startswith(("SELECT", "SAVEPOINT", "RELEASE"))
    ]
    assert len(writes) == 1
    assert writes[0].lstrip().startswith("INSERT INTO quoted_carts")


def test_a_quote_without_a_cart_id_records_nothing(session, shopper):
    quote(session, None, T0)

    assert carts(session) == []


def test_a_refused_quote_records_nothing(session, shopper):
    MemberFactory(external_id="gone", now=T0 - DAY)
    membership.update_member(session, "gone", MemberChanges(status=MemberStatus.CLOSED))

    with pytest.raises(MemberNotFound):
        quote(session, "cart-1", T0, member_id="nobody")
    with pytest.raises(MemberInactive):
        quote(session, "cart-1", T0, member_id="gone")
    with pytest.raises(ValidationFailed):
        quote(session, "cart-1", T0, discount=10_000)

    assert carts(session) == []


# --- firing -----------------------------------------------------------------------------------


def test_an_abandoned_cart_fires_after_n_hours_and_not_before(session, shopper):
    abandoned = automation(session, AFTER_4_HOURS)
    quote(session, "cart-1", T0)

    assert run(session, T0 + 4 * HOUR - dt.timedelta(seconds=1)) == 0
    assert run(session, T0 + 4 * HOUR) == 1

    [payload] = fired(session)
    assert payload["automation"]["id"] == str(abandoned.public_id)
    assert payload["member"]["member_id"] == "c1"
    assert payload["trigger"] == {
        "kind": "cart_abandoned",
        "after_hours": 4,
        "cart": {
            "cart_id": "cart-1",
            "amount": 6200,
            "currency": "USD",
            "points_to_earn": 62,
            "items": [TEE, MUG],
            "first_quoted_at": T0.isoformat(),
            "quoted_at": T0.isoformat(),
        },
    }
    [firing_row] = session.scalars(sa.select(AutomationFiring))
    assert firing_row.window_start == T0
    # The OpenAPI document's AutomationFiredEvent describes it: no field unknown or mistyped.
    assert TriggerDetailsSchema().validate(payload["trigger"]) == {}


def test_an_order_naming_the_cart_keeps_it_from_firing(session, shopper):
    automation(session, AFTER_4_HOURS)
    quote(session, "cart-1", T0)
    OrderFactory(order_id="o1", cart_id="cart-1", now=T0 + 6 * HOUR)

    # Placed after the timer ran out but before the pass: the cart was bought, not abandoned.
    assert run(session, T0 + 7 * HOUR) == 0
    assert run(session, T0 + 30 * DAY) == 0


def test_a_refunded_order_still_bought_the_cart(session, shopper):
    automation(session, AFTER_4_HOURS)
    quote(session, "cart-1", T0)
    OrderFactory(order_id="o1", cart_id="cart-1", now=T0 + HOUR)
    refunds.refund_order(
        session, "o1", refund_command({"refund_id": "r1", "amount": 6200}), now=T0 + 2 * HOUR
    )

    assert run(session, T0 + 5 * HOUR) == 0


def test_orders_for_another_cart_without_one_or_before_the_first_quote_do_not_count(
    session, shopper
):
    MemberFactory(external_id="c2", now=T0 - DAY)
    automation(session, AFTER_4_HOURS)
    OrderFactory(order_id="earlier", cart_id="cart-1", now=T0 - HOUR)
    quote(session, "cart-1", T0)
    OrderFactory(order_id="other-cart", cart_id="cart-2", now=T0 + HOUR)
    OrderFactory(order_id="no-cart", now=T0 + HOUR)
    OrderFactory(order_id="other-member", member_id="c2", cart_id="cart-1", now=T0 + HOUR)

    assert run(session, T0 + 4 * HOUR) == 1


def test_a_cart_fires_once_however_often_it_is_quoted_again(session, shopper):
    automation(session, AFTER_4_HOURS)
    quote(session, "cart-1", T0)
    assert run(session, T0 + 4 * HOUR) == 1

    quote(session, "cart-1", T0 + 5 * HOUR)

    assert run(session, T0 + 10 * HOUR) == 0
    assert run(session, T0 + 30 * DAY) == 0
    assert session.scalar(sa.select(sa.func.count()).select_from(AutomationFiring)) == 1


def test_quoting_a_cart_again_restarts_its_timer_from_the_last_quote(session, shopper):
    automation(session, AFTER_4_HOURS)
    quote(session, "cart-1", T0)
    quote(session, "cart-1", T0 + 3 * HOUR, lines=[MUG])

    assert run(session, T0 + 7 * HOUR - dt.timedelta(seconds=1)) == 0
    assert run(session, T0 + 7 * HOUR) == 1

    cart = fired(session)[0]["trigger"]["cart"]
    assert (cart["first_quoted_at"], cart["quoted_at"]) == (
        T0.isoformat(),
        (T0 + 3 * HOUR).isoformat(),
    )
    assert (cart["amount"], cart["items"]) == (1200, [MUG])


def test_two_abandoned_carts_fire_one_a_pass_oldest_first(session, shopper):
    automation(session, AFTER_4_HOURS)
    quote(session, "cart-1", T0)
    quote(session, "cart-2", T0 + HOUR)

    assert [run(session, T0 + n * DAY) for n in (1, 2, 3)] == [1, 1, 0]
    assert [p["trigger"]["cart"]["cart_id"] for p in fired(session)] == ["cart-1", "cart-2"]


def test_carts_last_quoted_before_the_automation_existed_are_not_due(session, shopper):
    quote(session, "old", T0 - 10 * DAY)
    automation(session, AFTER_4_HOURS, now=T0 - DAY)
    quote(session, "new", T0)

    assert run(session, T0 + DAY) == 1
    assert run(session, T0 + 2 * DAY) == 0
    assert fired(session)[0]["trigger"]["cart"]["cart_id"] == "new"


@pytest.mark.parametrize("status", [MemberStatus.SUSPENDED, MemberStatus.CLOSED])
def test_closed_and_suspended_members_carts_never_fire(session, shopper, status):
    automation(session, AFTER_4_HOURS)
    quote(session, "cart-1", T0)
    membership.update_member(session, "c1", MemberChanges(status=status))

    assert run(session, T0 + DAY) == 0
    assert session.scalar(sa.select(sa.func.count()).select_from(AutomationFiring)) == 0


def test_conditions_narrow_the_trigger(session, shopper):
    automation(session, AFTER_4_HOURS, conditions={"metadata": {"vip": True}})
    MemberFactory(external_id="vip", metadata={"vip": True}, now=T0 - DAY)
    quote(session, "cart-1", T0)
    quote(session, "cart-9", T0, member_id="vip")

    assert run(session, T0 + DAY) == 1
    assert fired(session)[0]["member"]["member_id"] == "vip"


def test_a_dedup_window_holds_back_the_next_cart(session, shopper):
    automation(session, AFTER_4_HOURS, dedup_days=7)
    quote(session, "cart-1", T0)
    quote(session, "cart-2", T0 + DAY)

    assert run(session, T0 + DAY) == 1
    assert run(session, T0 + 3 * DAY) == 0
    assert run(session, T0 + 8 * DAY) == 1


@pytest.mark.parametrize("after_hours", [None, 0, 721, 1.5, True, "4"])
def test_cart_abandoned_needs_whole_after_hours_from_1_to_720(after_hours):
    trigger = {"kind": "cart_abandoned", "after_hours": after_hours}
    definition = AutomationDefinition(name="Cart", trigger=trigger, actions=[{"type": "webhook"}])

    with pytest.raises(ValidationFailed) as refused:
        check_definition(definition.versioned())

    assert list(refused.value.extra["errors"]) == ["trigger.after_hours"]


def test_cart_abandoned_takes_no_other_parameter():
    trigger = {**AFTER_4_HOURS, "days": 3}
    definition = AutomationDefinition(name="Cart", trigger=trigger, actions=[{"type": "webhook"}])

    with pytest.raises(ValidationFailed) as refused:
        check_definition(definition.versioned())

    assert list(refused.value.extra["errors"]) == ["trigger.days"]


def test_simulate_explains_a_cart_trigger(session, shopper):
    abandoned = automation(session, AFTER_4_HOURS)
    quote(session, "cart-1", T0)

    early = services.simulate(session, abandoned.public_id, "c1", now=T0 + HOUR)
    due = services.simulate(session, abandoned.public_id, "c1", now=T0 + 4 * HOUR)
    run(session, T0 + 4 * HOUR)
    after = services.simulate(session, abandoned.public_id, "c1", now=T0 + 5 * HOUR)

    assert (early.reason, due.reason, after.reason) == ("not_due", "due", "not_due")
    assert "4 hours" in early.detail
    assert due.window_start == T0
    assert due.trigger is not None
    assert due.trigger["kind"] == "cart_abandoned"
    assert due.trigger["cart"]["cart_id"] == "cart-1"


# --- the console ------------------------------------------------------------------------------


def test_the_console_lists_the_trigger_and_shows_the_cart_a_simulation_finds(app, client):
    now = utcnow()
    with services_session(app) as session:
        key = ApiKeyFactory(name="ops-admin", scopes=("admin",))
        RuleFactory()
        MemberFactory(c1=True, now=now - 60 * DAY)
        found = automation(session, AFTER_4_HOURS, now=now - DAY, name="Your cart")
        quote(session, "cart-1", now - 5 * HOUR)
    sign_in(client, key)

    listing = client.get("/admin/automations")
    page = client.get(f"/admin/automations/{found.public_id}?member_id=c1")

    assert "cart_abandoned (after_hours 4)" in listing.text
    assert page.status_code == 200
    assert re.search(
        r'id="simulation-cart">Cart <code>cart-1</code>: \$62\.00 in 2 lines, 62 points to earn',
        page.text,
    ), page.text


# --- two workers at once ----------------------------------------------------------------------

CARTS = 40


@pytest.mark.committed
@pytest.mark.postgresql_only
@pytest.mark.parametrize("grant", [True, False], ids=["grants in batches", "webhook in SQL"])
def test_two_workers_at_once_fire_each_abandoned_cart_once(app, grant):
    with app.app_context():
        rule = RuleFactory(bonus=True, points=10, conditions={})
        actions = [{"type": "webhook"}]
        if grant:
            actions.append({"type": "grant_points", "rule_id": str(rule.public_id)})
        body = {"name": "Your cart", "trigger": AFTER_4_HOURS, "actions": actions}
        services.create_automation(
            db.session, AutomationInSchema().load(body), "test", now=T0 - DAY
        )
        for n in range(CARTS):
            MemberFactory(external_id=f"m{n:03d}", now=T0 - DAY)
            quote(db.session, f"cart-{n}", T0, member_id=f"m{n:03d}")

    results = race(app, 2, lambda _: firing.fire_due(db.session, now=T0 + 4 * HOUR, batch_size=7))

    assert raised(results) == []
    assert sum(summary.total for summary in results) == CARTS
    with app.app_context():
        firings = db.session.scalar(sa.select(sa.func.count()).select_from(AutomationFiring))
        events = db.session.scalars(
            sa.select(OutboxEvent.payload).where(OutboxEvent.type == "automation.fired")
        ).all()
    assert firings == CARTS
    assert sorted(e["trigger"]["cart"]["cart_id"] for e in events) == sorted(
        f"cart-{n}" for n in range(CARTS)
    )
