"""Importing order history from CSV: `loyalty import orders`.

Order history comes by the million: its rows are streamed (never held whole) into a staging
table by COPY, checked there in SQL and recorded by one INSERT ... SELECT, all in one
transaction (see import_orders). Each row is held to the API's own bounds
(loyalty.imports.rows), as members' and balances' are.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.db import UTCDateTime, insert_ignoring_conflicts, transaction, utcnow
from loyalty.errors import LoyaltyError
from loyalty.imports.rows import (
    ImportRejected,
    ImportResult,
    Parsed,
    Rejected,
    checked,
    id_field,
    moment_field,
    whole_field,
)
from loyalty.members.models import Member, MemberStatus
from loyalty.orders.earning import CartLine
from loyalty.orders.models import MAX_AMOUNT, RESERVED_ORDER_IDS, Order
from loyalty.orders.services import CLOCK_SKEW, PlaceOrder, place_order
from loyalty.program.services import get_settings

ORDER_COLUMNS = {"external_id", "order_id", "placed_at", "amount", "currency"}
IMPORTED_HASH = "import"
# An order earning through --earn has one line of its whole amount: the file has no lines.
IMPORTED_SKU = "imported-order"


def _order_row(row: dict[str, str], now: dt.datetime, currency: str) -> dict[str, Any]:
    external_id = id_field(row, "external_id")
    order_id = id_field(row, "order_id")
    if order_id in RESERVED_ORDER_IDS:
        raise ValueError(f"order_id: {order_id!r} names no order (it is an API path)")
    placed_at = moment_field(row, "placed_at")
    if placed_at is None:
        raise ValueError("placed_at: required")
    if placed_at > now + CLOCK_SKEW:
        raise ValueError("placed_at: in the future")
    amount = whole_field(row, "amount", MAX_AMOUNT, "minor units")
    if row["currency"] != currency:
        raise ValueError(f"currency: the program runs in {currency}")
    return {
        "line": 0,
        "external_id": external_id,
        "order_id": order_id,
        "placed_at": placed_at,
        "placed_at_text": row["placed_at"],
        "amount": amount,
        "currency": currency,
    }


# The valid rows of an order import, staged in a temporary table of the import's own
# transaction: checked against members and orders in SQL, then inserted by one INSERT ...
# SELECT. Dropped at the end (and at COMMIT on PostgreSQL).
_STAGED = sa.Table(
    "import_staged_orders",
    sa.MetaData(),
    sa.Column("line", sa.BigInteger, primary_key=True),
    sa.Column("external_id", sa.String(128), nullable=False),
    sa.Column("order_id", sa.String(128), nullable=False),
    sa.Column("placed_at", UTCDateTime(), nullable=False),
    sa.Column("placed_at_text", sa.Text, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
_STAGED_COLUMNS = [column.name for column in _STAGED.columns]


def _stage(session: Session, rows: Iterable[Parsed], progress: Callable[[int], None] | None) -> int:
    """Load the rows into the staging table: COPY on PostgreSQL, batched executemany on
    SQLite. Returns how many."""
    connection = session.connection()
    _STAGED.create(connection)
    staged = 0
    if connection.dialect.name == "postgresql":
        driver = connection.connection.driver_connection
        columns = ", ".join(_STAGED_COLUMNS)
        with (
            driver.cursor() as cursor,  # type: ignore[union-attr]
            cursor.copy(f"COPY {_STAGED.name} ({columns}) FROM STDIN") as copy,
        ):
            for line, parsed, _ in rows:
                copy.write_row([line, *(parsed[name] for name in _STAGED_COLUMNS[1:])])
                staged += 1
                if progress and not staged % 10000:
                    progress(10000)
        if progress:
            progress(staged % 10000)
        # Statistics for the checks' and the insert's joins (a temporary table has none).
        connection.exec_driver_sql(f"ANALYZE {_STAGED.name}")
        return staged
    insert = _STAGED.insert()
    batch: list[dict[str, Any]] = []
    for line, parsed, _ in rows:
        batch.append({**parsed, "line": line})
        if len(batch) == 10000:
            connection.execute(insert, batch)
            staged += len(batch)
            if progress:
                progress(len(batch))
            batch = []
    if batch:
        connection.execute(insert, batch)
        staged += len(batch)
        if progress:
            progress(len(batch))
    return staged


def _staged_rejections(session: Session, earn: bool) -> list[Rejected]:
    """Staged rows that cannot be recorded: an unknown member; an order_id already recorded
    for another member, amount, currency or time; with `earn`, a member who is not active
    (they earn nothing). An order_id already recorded the same way is not one of them: it
    is skipped (a re-run)."""
    s, m, o = _STAGED.c, Member.__table__.c, Order.__table__.c
    member = sa.select(m.id, m.status).where(m.external_id == s.external_id)
    recorded = (
        sa.select(sa.literal(1))
        .select_from(Order.__table__.join(Member.__table__, m.id == o.member_id))
        .where(
            o.order_id == s.order_id,
            sa.or_(
                m.external_id != s.external_id,
                o.total != s.amount,
                o.currency != s.currency,
                o.placed_at != s.placed_at,
            ),
        )
    )
    checks = [
        ("external_id: no such member", ~member.exists()),
        ("order_id: already recorded for another member, amount or time", recorded.exists()),
    ]
    if earn:
        inactive = member.where(m.status != MemberStatus.ACTIVE.value).exists()
        checks.append(("external_id: the member is not active; it earns nothing", inactive))
    reasons: dict[int, Rejected] = {}
    for reason, condition in checks:
        for staged in session.execute(sa.select(_STAGED).where(condition)).mappings():
            written = {
                "external_id": staged["external_id"],
                "order_id": staged["order_id"],
                "placed_at": staged["placed_at_text"],
                "amount": str(staged["amount"]),
                "currency": staged["currency"],
            }
            reasons.setdefault(staged["line"], Rejected(staged["line"], written, reason))
    return list(reasons.values())


def _insert_history(session: Session, now: dt.datetime) -> int:
    """Record the staged orders not recorded yet, of known members, without points: one
    INSERT ... SELECT. Returns how many."""
    s, m, o = _STAGED.c, Member.__table__.c, Order.__table__.c
    empty = sa.bindparam("empty", [], type_=sa.JSON)
    values: dict[str, Any] = {
        "order_id": s.order_id,
        "member_id": m.id,
        "currency": s.currency,
        "subtotal": s.amount,
        "discount": sa.literal(0),
        "total": s.amount,
        "redeemed_points": sa.literal(0),
        "redeemed_value": sa.literal(0),
        "points_earned": sa.literal(0),
        "breakdown": empty,
        "lines": empty,
        # No request recorded it: a marker no API fingerprint (a SHA-256 in hex) equals, so
        # an API order reusing the order_id is a 409 order_conflict, never a replay.
        "request_hash": sa.literal(IMPORTED_HASH),
        "placed_at": s.placed_at,
        "created_at": sa.bindparam("now", now, type_=UTCDateTime()),
        "refunded_amount": sa.literal(0),
        "points_reversed": sa.literal(0),
        "points_restored": sa.literal(0),
    }
    select = (
        sa.select(*values.values())
        .select_from(_STAGED.join(Member.__table__, m.external_id == s.external_id))
        .where(~sa.select(o.id).where(o.order_id == s.order_id).exists())
        # In time order: the orders' ids then follow their placed_at, as live orders' do.
        .order_by(s.placed_at, s.line)
    )
    insert = insert_ignoring_conflicts(session, Order, ["order_id"]).from_select(
        list(values), select
    )
    # rowcount of an INSERT is kept only when asked for.
    return session.connection().execute(insert.execution_options(preserve_rowcount=True)).rowcount


def _earn_staged(
    session: Session, now: dt.datetime, rejected: list[Rejected], refused: set[int]
) -> int:
    """Place each staged order not recorded yet through the checkout's own service, in time
    order, earning as an API order with `earn_points` would (one line of its whole
    amount). A refusal (a cart over the points bound) rolls back that order only and is
    added to `rejected`. Returns how many were recorded."""
    s, o = _STAGED.c, Order.__table__.c
    rows = (
        session.execute(
            sa.select(_STAGED)
            .where(~sa.select(o.id).where(o.order_id == s.order_id).exists())
            .order_by(s.placed_at, s.line)
        )
        .mappings()
        .all()
    )
    placed = 0
    for row in rows:
        if row["line"] in refused:
            continue
        command = PlaceOrder(
            order_id=row["order_id"],
            external_id=row["external_id"],
            currency=row["currency"],
            lines=(CartLine(IMPORTED_SKU, None, 1, row["amount"]),),
            placed_at=row["placed_at"],
            earn_points=True,
        )
        try:
            with transaction(session, savepoint=True):
                place_order(session, command, now)
        except LoyaltyError as error:
            written = {name: str(row[name]) for name in ("external_id", "order_id", "amount")}
            written |= {"placed_at": row["placed_at_text"], "currency": row["currency"]}
            rejected.append(Rejected(row["line"], written, f"{error.code}: {error.detail}"))
            continue
        placed += 1
    return placed


def import_orders(
    session: Session,
    stream: TextIO,
    *,
    all_or_nothing: bool = True,
    earn: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import past orders (columns: external_id, order_id, placed_at, amount, currency):
    history, recorded without points, unless `earn` (each then earns as an API order
    placed then with ``earn_points``, row by row: slow for millions).

    Each row is held to the API's bounds (the order_id's characters, an amount of at most
    10^12 minor units in the program's currency, a moment with an offset that exists in
    UTC and is not in the future); its member must exist. An order_id already recorded the
    same way (member, amount, currency, placed_at) is skipped, so a re-run adds nothing;
    recorded differently, the row is rejected. The rows are streamed into a staging table
    (COPY on PostgreSQL), checked there in SQL and recorded by one INSERT ... SELECT, all in
    one transaction. Raises ImportRejected (all-or-nothing only).
    """
    now = utcnow()
    currency = get_settings(session).currency
    rejected: list[Rejected] = []
    rows = checked(
        stream, ORDER_COLUMNS, lambda row: _order_row(row, now, currency), rejected, "order_id"
    )
    with transaction(session):
        staged = _stage(session, rows, progress)
        unparsed = len(rejected)  # rows refused before staging
        rejected += _staged_rejections(session, earn)
        if rejected and all_or_nothing:
            raise ImportRejected(sorted(rejected, key=lambda r: r.line))
        refused = {item.line for item in rejected}
        if earn:
            imported = _earn_staged(session, now, rejected, refused)
            if len(rejected) > len(refused) and all_or_nothing:
                raise ImportRejected(sorted(rejected, key=lambda r: r.line))
        else:
            imported = _insert_history(session, now)
        _STAGED.drop(session.connection())
    # What was staged and neither recorded nor rejected was there already.
    return ImportResult(
        imported=imported,
        skipped=staged - imported - (len(rejected) - unparsed),
        rejected=sorted(rejected, key=lambda r: r.line),
    )
