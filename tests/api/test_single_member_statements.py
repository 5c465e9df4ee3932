"""Every SQL statement on the checkout hot paths touches one member's rows only, apart from
reference tables: the property that lets the database be sharded by member (docs/scaling.md).

Each hot path runs over HTTP for member c1, in a world where c2 has points, orders and holds
too, with tiers, an event rule, a budgeted rule and an experiment in play. Every statement
the driver receives is captured with its parameters and checked (tests/statements.py)
against the tables' classification (tests/sharding.py); each member, parent key or routed
key a statement is pinned by is then looked up, and must be c1's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from loyalty.db import utcnow
from loyalty.extensions import db
from tests.api.checkout_calls import CART, DAY, add_rule, give
from tests.factories import RuleFactory
from tests.helpers import created, iso, ok
from tests.sharding import DISTRIBUTED
from tests.statements import Pin, check

pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")

REVIEW = RuleFactory.build(
    name="Reviews", kind="event", points=10, per_amount=None, event_type="review"
)
# Tiers, rules and experiments are read from each process's copy of the configuration, so
# their tables appear only when it changes.
EXERCISED = {
    "api_keys",
    "program_settings",
    "members",
    "member_balances",
    "ledger_transactions",
    "ledger_entries",
    "point_lots",
    "redemptions",
    "redemption_allocations",
    "orders",
    "refunds",
    "quoted_carts",
    "member_events",
    "rule_awards",
    "tier_changes",
    "experiment_assignments",
    "referrals",
    "outbox_events",
    "idempotency_keys",
    "rule_budget_usage",
}
BUDGETED = RuleFactory.build(name="Launch", budget={"period": "month", "points": 1_000_000})


def unique_keys() -> dict[str, list[frozenset[str]]]:
    """Each table's unique keys (primary key, unique constraints and indexes), by name."""
    keys: dict[str, list[frozenset[str]]] = {}
    for table in db.metadata.tables.values():
        found = [frozenset(c.name for c in table.primary_key.columns)]
        for constraint in table.constraints:
            if isinstance(constraint, sa.UniqueConstraint):
                found.append(frozenset(c.name for c in constraint.columns))
        found += [frozenset(c.name for c in i.columns) for i in table.indexes if i.unique]
        found += [frozenset([c.name]) for c in table.columns if c.unique]
        keys[table.name] = found
    return keys


@pytest.fixture
def captured(app) -> Iterator[list[tuple[str, Any]]]:
    """Every statement sent to the database meanwhile, with its parameters."""
    statements: list[tuple[str, Any]] = []

    def before(_conn, _cursor, statement, parameters, _context, _executemany) -> None:
        statements.append((statement, parameters))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", before)


@pytest.fixture
def world(client, admin, checkout, program) -> None:
    """c1 and c2 with points; c2 with an order and a hold of its own; an experiment running
    on the review rule, so events expose their member."""
    review = add_rule(client, admin, REVIEW)
    add_rule(client, admin, BUDGETED)
    now = utcnow()
    experiment = {
        "key": "reviews",
        "name": "Reviews",
        "hypothesis": "Points for reviews bring more reviews than they cost.",
        "target": {"kind": "rules", "rule_ids": [review["id"]]},
        "arms": [
            {"key": "control", "weight": 1, "control": True, "rule_ids": []},
            {"key": "points", "weight": 1, "rule_ids": [review["id"]]},
        ],
        "starts_at": iso(now - DAY),
        "ends_at": iso(now + 27 * DAY),
        "margin": "0.35",
    }
    draft = created(client.post("/v1/admin/experiments", json=experiment, headers=admin))
    ok(client.post(f"/v1/admin/experiments/{draft['id']}/start", headers=admin))
    for member in ("c1", "c2"):
        created(client.post("/v1/members", json={"external_id": member}, headers=checkout))
        give(client, admin, member, 5000)
    order = {**CART, "member_id": "c2", "order_id": "o-c2"}
    created(client.post("/v1/orders", json=order, headers=checkout))
    body = {"member_id": "c2", "points": 300}
    created(client.post("/v1/redemptions", json=body, headers=checkout))


def hot_paths(client, checkout) -> Iterator[tuple[str, Any]]:
    """Run each hot path for c1 in turn, yielding its name after it ran (and its response)."""

    def keyed(key: str) -> dict[str, str]:
        return {**checkout, "Idempotency-Key": key}

    def hold(points: int, key: str) -> Any:
        body = {"member_id": "c1", "points": points}
        return client.post("/v1/redemptions", json=body, headers=keyed(key))

    yield "card", client.get("/v1/members/c1", headers=checkout)
    cart = {**CART, "member_id": "c1", "cart_id": "cart-1"}
    yield "quote", client.post("/v1/orders/quote", json=cart, headers=checkout)
    used = hold(500, "h1")
    yield "hold", used
    placed = {**cart, "order_id": "o1", "redemption_id": used.json["redemption_id"]}
    yield "order", client.post("/v1/orders", json=placed, headers=keyed("o1"))
    yield "order retried", client.post("/v1/orders", json=placed, headers=keyed("o1"))
    for action, points in (("capture", 200), ("release", 100)):
        held = hold(points, f"h-{action}")
        yield f"hold to {action}", held
        path = f"/v1/redemptions/{held.json['redemption_id']}/{action}"
        yield action, client.post(path, headers=keyed(action))
    body = {"refund_id": "r1", "amount": 1000}
    yield "refund", client.post("/v1/orders/o1/refunds", json=body, headers=keyed("f1"))
    event = {"event_id": "e1", "member_id": "c1", "type": "review"}
    yield "event", client.post("/v1/events", json=event, headers=keyed("e1"))


def member_of(pin: Pin) -> Any:
    """The member (row id) a pin names, looked up now; None for a key no row has."""
    spec = DISTRIBUTED[pin.table]
    if pin.kind in ("member", "group"):
        return pin.value
    # Untyped columns and bind: the value goes to the driver as it was captured (a UUID as
    # SQLite stores it).
    value = sa.bindparam("value", pin.value)
    if spec.column is not None:
        query = (
            sa.select(sa.column(spec.column))
            .select_from(sa.table(pin.table))
            .where(sa.column(pin.column) == value)
        )
    else:
        assert spec.parent is not None
        key, name = spec.parent
        member = DISTRIBUTED[name].column or "id"
        parent = sa.table(name, sa.column("id"), sa.column(member)).alias("p")
        if pin.kind == "parent":
            query = sa.select(parent.c[member]).where(parent.c.id == value)
        else:
            child = sa.table(pin.table, sa.column(key), sa.column(pin.column)).alias("c")
            query = (
                sa.select(parent.c[member])
                .select_from(child.join(parent, parent.c.id == child.c[key]))
                .where(child.c[pin.column] == value)
            )
    return db.session.execute(query).scalar()


@pytest.mark.usefixtures("world")
def test_every_hot_path_statement_touches_one_members_rows(
    app, client, checkout, captured, dialect
):
    keys = unique_keys()
    problems, members, ran, touched = [], set(), [], set()
    for name, response in hot_paths(client, checkout):
        assert response.status_code in (200, 201), (name, response.json)
        ran.append((name, list(captured)))
        captured.clear()
    with app.app_context():
        c1 = db.session.execute(sa.text("SELECT id FROM members WHERE external_id = 'c1'")).scalar()
        for name, statements in ran:
            pinned = 0
            for sql, parameters in statements:
                verdict = check(sql, parameters, dialect, keys)
                touched.update(verdict.tables)
                problems += [f"{name}: {v}\n    {sql}" for v in verdict.violations]
                for pin in verdict.pins:
                    member = member_of(pin)
                    pinned += 1
                    if member is not None:
                        members.add(member)
                    if member not in (None, c1):
                        problems.append(f"{name}: {pin} is member {member}, not c1\n    {sql}")
            # A retry is answered from its Idempotency-Key's stored answer: no member's rows.
            assert pinned or name == "order retried", f"{name}: nothing pinned: captured?"
    assert not problems, "\n".join(problems)
    # The world keeps every table of a checkout in play, so each is checked.
    assert touched >= EXERCISED, EXERCISED - touched
    assert members == {c1}
