"""The bare-stack ceiling: Flask + SQLAlchemy doing only the essential SQL of each checkout
operation, on loyalty's own database and schema (migrated by `loyalty db upgrade`).

Served by gunicorn with loyalty's settings (`-c gunicorn.conf.py`, the same workers), it
shows what this stack can do on this machine at all; bench/run.py prints loyalty's figures
as a ratio of these. What it leaves out is exactly what loyalty adds on top: API key checks,
Idempotency-Keys, marshmallow validation and serialization, earning rules, lots, settlement,
tiers, the outbox, metrics and logs.

Per operation (one transaction each, like loyalty):

- card:    read the member with their balance row (one SELECT).
- quote:   the same read; earn 1 point per 100 of the cart, in Python.
- order:   lock the balance row (SELECT ... FOR UPDATE), insert the order, the ledger
           transaction and its two entries, update the balance, commit.
- hold:    lock, check the available points, insert the redemption, the transaction and its
           entries, update the balance, commit.
- capture: read the redemption, lock its member's balance row, insert the transaction and
           its entries, mark the redemption captured, update the balance, commit.
- refund:  read the order, lock, insert the refund, the transaction and its entries, update
           the order and the balance, commit.
- event:   lock the balance row, insert the event, the transaction and its entries, update
           the balance, commit (10 points a review, the event rule run.py gives loyalty).

No authentication (the Authorization header is ignored) and no idempotency: the load
generator sends unique ids. On SQLite the engine behaves as loyalty's does (WAL, BEGIN
IMMEDIATE, so writers queue on the database lock).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from typing import Any

import sqlalchemy as sa
from flask import Flask, jsonify, request
from sqlalchemy import event

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
POINT_VALUE = (100, 100)  # 100 points are worth 100 minor units, as loyalty's default
EARN_PER = 100  # 1 point per 100 minor units spent: the spend rule run.py gives loyalty
HOLD_TTL = dt.timedelta(hours=1)
EVENT_POINTS = 10  # a review: the event rule run.py gives loyalty

metadata = sa.MetaData()
members = sa.Table(
    "members",
    metadata,
    sa.Column("id", BigIntPK, primary_key=True),
    sa.Column("external_id", sa.String(128)),
    sa.Column("email", sa.String(320)),
    sa.Column("name", sa.String(200)),
    sa.Column("status", sa.String(16)),
    sa.Column("enrolled_at", TS),
)
balances = sa.Table(
    "member_balances",
    metadata,
    sa.Column("member_id", BigIntPK, primary_key=True),
    sa.Column("available", sa.BigInteger),
    sa.Column("pending", sa.BigInteger),
    sa.Column("held", sa.BigInteger),
    sa.Column("last_activity_at", TS),
    sa.Column("updated_at", TS),
)
transactions = sa.Table(
    "ledger_transactions",
    metadata,
    sa.Column("id", BigIntPK, primary_key=True),
    sa.Column("public_id", sa.Uuid),
    sa.Column("member_id", BigIntPK),
    sa.Column("kind", sa.String(16)),
    sa.Column("effective_at", TS),
    sa.Column("created_at", TS),
    sa.Column("reference", sa.String(200)),
    sa.Column("qualifying", sa.BigInteger),
    sa.Column("details", sa.JSON),
)
entries = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("id", BigIntPK, primary_key=True),
    sa.Column("transaction_id", BigIntPK),
    sa.Column("member_id", BigIntPK),
    sa.Column("account", sa.String(16)),
    sa.Column("amount", sa.BigInteger),
)
orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", BigIntPK, primary_key=True),
    sa.Column("order_id", sa.String(128)),
    sa.Column("member_id", BigIntPK),
    sa.Column("currency", sa.String(3)),
    sa.Column("subtotal", sa.BigInteger),
    sa.Column("discount", sa.BigInteger),
    sa.Column("total", sa.BigInteger),
    sa.Column("redeemed_points", sa.BigInteger),
    sa.Column("redeemed_value", sa.BigInteger),
    sa.Column("points_earned", sa.BigInteger),
    sa.Column("breakdown", sa.JSON),
    sa.Column("lines", sa.JSON),
    sa.Column("request_hash", sa.String(64)),
    sa.Column("placed_at", TS),
    sa.Column("available_at", TS),
    sa.Column("created_at", TS),
    sa.Column("refunded_amount", sa.BigInteger),
    sa.Column("points_reversed", sa.BigInteger),
    sa.Column("points_restored", sa.BigInteger),
)
refunds = sa.Table(
    "refunds",
    metadata,
    sa.Column("id", BigIntPK, primary_key=True),
    sa.Column("refund_id", sa.String(128)),
    sa.Column("order_pk", BigIntPK),
    sa.Column("amount", sa.BigInteger),
    sa.Column("lines", sa.JSON),
    sa.Column("points_reversed", sa.BigInteger),
    sa.Column("points_restored", sa.BigInteger),
    sa.Column("request_hash", sa.String(64)),
    sa.Column("created_at", TS),
)
member_events = sa.Table(
    "member_events",
    metadata,
    sa.Column("id", BigIntPK, primary_key=True),
    sa.Column("event_id", sa.String(200)),
    sa.Column("member_id", BigIntPK),
    sa.Column("type", sa.String(64)),
    sa.Column("occurred_at", TS),
    sa.Column("attributes", sa.JSON),
    sa.Column("points_earned", sa.BigInteger),
    sa.Column("breakdown", sa.JSON),
    sa.Column("request_hash", sa.String(64)),
    sa.Column("created_at", TS),
)
redemptions = sa.Table(
    "redemptions",
    metadata,
    sa.Column("id", BigIntPK, primary_key=True),
    sa.Column("public_id", sa.Uuid),
    sa.Column("member_id", BigIntPK),
    sa.Column("points", sa.BigInteger),
    sa.Column("value", sa.BigInteger),
    sa.Column("currency", sa.String(3)),
    sa.Column("status", sa.String(16)),
    sa.Column("order_ref", sa.String(128)),
    sa.Column("expires_at", TS),
    sa.Column("created_at", TS),
    sa.Column("captured_at", TS),
    sa.Column("restored_points", sa.BigInteger),
)


def _engine() -> sa.Engine:
    raw = os.environ.get("DATABASE_URL", "")
    if not raw:
        raise RuntimeError("set DATABASE_URL (the database bench/run.py created)")
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            raw = "postgresql+psycopg://" + raw[len(prefix) :]
    if raw.startswith("sqlite"):
        engine = sa.create_engine(raw, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # The pool loyalty uses (5 + 5 overflow per worker), without its pre-ping.
    return sa.create_engine(
        raw,
        pool_size=int(os.environ.get("LOYALTY_DB_POOL_SIZE", "5")),
        max_overflow=int(os.environ.get("LOYALTY_DB_MAX_OVERFLOW", "5")),
        connect_args={"connect_timeout": 5, "options": "-c timezone=UTC"},
    )


engine = _engine()
IS_PG = engine.dialect.name == "postgresql"
app = Flask(__name__)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def problem(status: int, code: str, detail: str) -> tuple[Any, int]:
    return jsonify({"status": status, "code": code, "detail": detail}), status


def _member_with_balance(conn: sa.Connection, external_id: str, lock: bool) -> Any:
    stmt = (
        sa.select(
            members.c.id,
            members.c.external_id,
            members.c.email,
            members.c.name,
            members.c.status,
            members.c.enrolled_at,
            balances.c.available,
            balances.c.pending,
            balances.c.held,
        )
        .join(balances, balances.c.member_id == members.c.id)
        .where(members.c.external_id == external_id)
    )
    if lock and IS_PG:
        stmt = stmt.with_for_update(of=balances)
    return conn.execute(stmt).one_or_none()


def _lock_balance(conn: sa.Connection, member_id: int) -> Any:
    stmt = sa.select(balances.c.available, balances.c.held).where(balances.c.member_id == member_id)
    if IS_PG:
        stmt = stmt.with_for_update()
    return conn.execute(stmt).one()


def _post(
    conn: sa.Connection,
    member_id: int,
    kind: str,
    legs: list[tuple[str, int]],
    reference: str,
    when: dt.datetime,
) -> None:
    """Insert one balanced transaction and its entries; move the member's balance columns."""
    txn_id = conn.execute(
        sa.insert(transactions)
        .values(
            public_id=uuid.uuid4(),
            member_id=member_id,
            kind=kind,
            effective_at=when,
            created_at=when,
            reference=reference,
            qualifying=0,
            details={},
        )
        .returning(transactions.c.id)
    ).scalar_one()
    conn.execute(
        sa.insert(entries),
        [
            {"transaction_id": txn_id, "member_id": member_id, "account": a, "amount": n}
            for a, n in legs
        ],
    )
    moves = {a: balances.c[a] + n for a, n in legs if a in ("available", "pending", "held")}
    conn.execute(
        sa.update(balances)
        .where(balances.c.member_id == member_id)
        .values(**moves, last_activity_at=when, updated_at=when)
    )


def _cart(body: dict[str, Any]) -> tuple[int, int, int]:
    subtotal = sum(line["quantity"] * line["unit_price"] for line in body["lines"])
    discount = body.get("discount") or 0
    total = subtotal - discount
    return subtotal, total, total // EARN_PER


def _value(points: int) -> int:
    return points * POINT_VALUE[1] // POINT_VALUE[0]


@app.get("/healthz")
def healthz() -> Any:
    return {"status": "ok"}


@app.get("/v1/members/<external_id>")
def card(external_id: str) -> Any:
    with engine.begin() as conn:
        row = _member_with_balance(conn, external_id, lock=False)
    if row is None:
        return problem(404, "member_not_found", "No such member.")
    return {
        "external_id": row.external_id,
        "status": row.status,
        "email": row.email,
        "name": row.name,
        "enrolled_at": row.enrolled_at.isoformat(),
        "tier": None,
        "balance": {
            "available": row.available,
            "pending": row.pending,
            "held": row.held,
            "expiring_soon": [],
        },
    }


@app.post("/v1/orders/quote")
def quote() -> Any:
    body = request.get_json()
    _, total, points = _cart(body)
    with engine.begin() as conn:
        row = _member_with_balance(conn, body["member_id"], lock=False)
    if row is None:
        return problem(404, "member_not_found", "No such member.")
    best = min(max(row.available, 0), total // 2)
    return {
        "member_id": row.external_id,
        "points_to_earn": points,
        "breakdown": [{"name": "spend", "kind": "spend", "points": points}],
        "available_points": max(row.available, 0),
        "max_redeemable_points": best,
        "max_redeemable_value": {"amount": _value(best), "currency": "USD"},
    }


@app.post("/v1/orders")
def place_order() -> Any:
    body = request.get_json()
    subtotal, total, points = _cart(body)
    when = now()
    with engine.begin() as conn:
        row = _member_with_balance(conn, body["member_id"], lock=True)
        if row is None:
            return problem(404, "member_not_found", "No such member.")
        conn.execute(
            sa.insert(orders).values(
                order_id=body["order_id"],
                member_id=row.id,
                currency=body["currency"],
                subtotal=subtotal,
                discount=body.get("discount") or 0,
                total=total,
                redeemed_points=0,
                redeemed_value=0,
                points_earned=points,
                breakdown=[],
                lines=[{**line, "refunded_quantity": 0} for line in body["lines"]],
                request_hash="",
                placed_at=when,
                available_at=when,
                created_at=when,
                refunded_amount=0,
                points_reversed=0,
                points_restored=0,
            )
        )
        if points:
            _post(
                conn,
                row.id,
                "earn",
                [("issued", -points), ("available", points)],
                f"order:{body['order_id']}",
                when,
            )
    return {
        "order_id": body["order_id"],
        "member_id": row.external_id,
        "status": "available" if points else "none",
        "points_earned": points,
        "total": {"amount": total, "currency": body["currency"]},
        "placed_at": when.isoformat(),
    }, 201


@app.post("/v1/orders/<order_id>/refunds")
def refund(order_id: str) -> Any:
    body = request.get_json()
    when = now()
    with engine.begin() as conn:
        order = conn.execute(
            sa.select(
                orders.c.id,
                orders.c.member_id,
                orders.c.total,
                orders.c.points_earned,
                orders.c.points_reversed,
                orders.c.lines,
            ).where(orders.c.order_id == order_id)
        ).one_or_none()
        if order is None:
            return problem(404, "order_not_found", "No such order.")
        _lock_balance(conn, order.member_id)
        prices = {line["sku"]: line["unit_price"] for line in order.lines}
        amount = sum(prices.get(line["sku"], 0) * line["quantity"] for line in body["lines"])
        reversed_points = min(
            order.points_earned * amount // max(order.total, 1),
            order.points_earned - order.points_reversed,
        )
        conn.execute(
            sa.insert(refunds).values(
                refund_id=body["refund_id"],
                order_pk=order.id,
                amount=amount,
                lines=body["lines"],
                points_reversed=reversed_points,
                points_restored=0,
                request_hash="",
                created_at=when,
            )
        )
        if reversed_points:
            _post(
                conn,
                order.member_id,
                "reverse",
                [("available", -reversed_points), ("issued", reversed_points)],
                f"refund:{body['refund_id']}",
                when,
            )
        conn.execute(
            sa.update(orders)
            .where(orders.c.id == order.id)
            .values(
                refunded_amount=orders.c.refunded_amount + amount,
                points_reversed=orders.c.points_reversed + reversed_points,
            )
        )
    return {
        "refund_id": body["refund_id"],
        "order_id": order_id,
        "amount": {"amount": amount, "currency": "USD"},
        "points_reversed": reversed_points,
        "points_restored": 0,
        "created_at": when.isoformat(),
    }, 201


def _redemption_body(r: dict[str, Any], external_id: str | None) -> dict[str, Any]:
    return {
        "redemption_id": str(r["public_id"]),
        "member_id": external_id,
        "status": r["status"],
        "points": r["points"],
        "value": {"amount": r["value"], "currency": "USD"},
        "order_id": r["order_ref"],
        "expires_at": r["expires_at"].isoformat(),
        "created_at": r["created_at"].isoformat(),
        "captured_at": r["captured_at"].isoformat() if r["captured_at"] else None,
    }


@app.post("/v1/redemptions")
def hold() -> Any:
    body = request.get_json()
    points = body["points"]
    when = now()
    with engine.begin() as conn:
        row = _member_with_balance(conn, body["member_id"], lock=True)
        if row is None:
            return problem(404, "member_not_found", "No such member.")
        if row.available < points:
            return problem(422, "insufficient_points", f"{row.available} available.")
        redemption = {
            "public_id": uuid.uuid4(),
            "member_id": row.id,
            "points": points,
            "value": _value(points),
            "currency": "USD",
            "status": "held",
            "order_ref": body.get("order_id"),
            "expires_at": when + HOLD_TTL,
            "created_at": when,
            "captured_at": None,
            "restored_points": 0,
        }
        conn.execute(sa.insert(redemptions).values(**redemption))
        _post(
            conn,
            row.id,
            "hold",
            [("available", -points), ("held", points)],
            f"redemption:{redemption['public_id']}",
            when,
        )
    return _redemption_body(redemption, row.external_id), 201


@app.post("/v1/redemptions/<uuid:redemption_id>/capture")
def capture(redemption_id: uuid.UUID) -> Any:
    when = now()
    with engine.begin() as conn:
        found = conn.execute(
            sa.select(redemptions.c.member_id).where(redemptions.c.public_id == redemption_id)
        ).one_or_none()
        if found is None:
            return problem(404, "redemption_not_found", "No such redemption.")
        _lock_balance(conn, found.member_id)
        # Re-read under the member's lock: a concurrent capture or release is seen.
        r = (
            conn.execute(sa.select(redemptions).where(redemptions.c.public_id == redemption_id))
            .one()
            ._asdict()
        )
        if r["status"] == "held":
            _post(
                conn,
                r["member_id"],
                "capture",
                [("held", -r["points"]), ("redeemed", r["points"])],
                f"redemption:{redemption_id}",
                when,
            )
            conn.execute(
                sa.update(redemptions)
                .where(redemptions.c.id == r["id"])
                .values(status="captured", captured_at=when)
            )
            r.update(status="captured", captured_at=when)
        elif r["status"] != "captured":
            return problem(409, "already_released", "The hold was released.")
    return _redemption_body(r, None)


@app.post("/v1/events")
def record_event() -> Any:
    body = request.get_json()
    when = now()
    with engine.begin() as conn:
        row = _member_with_balance(conn, body["member_id"], lock=True)
        if row is None:
            return problem(404, "member_not_found", "No such member.")
        conn.execute(
            sa.insert(member_events).values(
                event_id=body["event_id"],
                member_id=row.id,
                type=body["type"],
                occurred_at=when,
                attributes=body.get("attributes") or {},
                points_earned=EVENT_POINTS,
                breakdown=[],
                request_hash="",
                created_at=when,
            )
        )
        _post(
            conn,
            row.id,
            "earn",
            [("issued", -EVENT_POINTS), ("available", EVENT_POINTS)],
            f"event:{body['event_id']}",
            when,
        )
    return {
        "event_id": body["event_id"],
        "member_id": row.external_id,
        "type": body["type"],
        "occurred_at": when.isoformat(),
        "points_earned": EVENT_POINTS,
        "breakdown": [],
    }, 201
