"""Importing members, opening balances and order history from CSV.

Rows are validated one by one; with `all_or_nothing` a single bad row stops the import
before anything is written, otherwise the good rows are imported and the bad ones reported.
Re-running an import changes nothing: members are matched on external_id, and a member's
opening balance is imported once (its ledger transaction is referenced `import:balance`).

A file imports entirely or not at all: every row is validated (by the API's own bounds)
before anything is written, and the writes are one transaction, so a failure half-way (the
database gone, a bug) leaves nothing behind. Speed matters (a shop brings hundreds of
thousands of members), so rows are written with SQLAlchemy Core in batches of statements
inside that transaction; a balance import holds its members' locks until it commits. Order
history comes by the million: its rows are streamed (never held whole) into a staging table
by COPY, checked there in SQL and recorded by one INSERT ... SELECT (see import_orders).
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.db import Base, UTCDateTime, insert_ignoring_conflicts, transaction, utcnow
from loyalty.errors import LoyaltyError
from loyalty.ledger.models import (
    Account,
    LedgerTransaction,
    MemberBalance,
    TransactionKind,
)
from loyalty.ledger.policy import MAX_POINTS
from loyalty.ledger.postings import Credit, credit_many
from loyalty.members.models import EXTERNAL_ID_PATTERN, Member, MemberStatus
from loyalty.orders.earning import CartLine
from loyalty.orders.models import MAX_AMOUNT, RESERVED_ORDER_IDS, Order
from loyalty.orders.services import CLOCK_SKEW, PlaceOrder, place_order
from loyalty.program.models import ProgramSettings
from loyalty.program.services import get_settings

EXTERNAL_ID = re.compile(EXTERNAL_ID_PATTERN)
DIGITS = re.compile(r"[0-9]+")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
BALANCE_REFERENCE = "import:balance"


@dataclass
class Rejected:
    line: int
    row: dict[str, str]
    reason: str


@dataclass
class ImportResult:
    imported: int = 0
    skipped: int = 0
    rejected: list[Rejected] = field(default_factory=list)


class ImportRejected(Exception):
    """An all-or-nothing import found bad rows, or the file itself is not readable CSV
    (`whole_file`); nothing was written."""

    def __init__(self, rejected: list[Rejected], *, whole_file: bool = False) -> None:
        super().__init__(f"{len(rejected)} rows rejected")
        self.rejected = rejected
        self.whole_file = whole_file


def _unreadable(line: int, reason: str) -> ImportRejected:
    return ImportRejected([Rejected(line, {}, reason)], whole_file=True)


def _rows(stream: TextIO, required: set[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """The file's rows with the line each ends on. Raises ImportRejected for a file that is
    not CSV text as a whole (not UTF-8, malformed quoting, a field over the size limit, a
    field spanning lines: an unclosed quote that would swallow the rows after it): no row of
    such a file can be trusted, whatever the mode."""
    reader = csv.DictReader(stream, strict=True)
    try:
        missing = required - set(reader.fieldnames or ())
        if missing:
            raise _unreadable(1, f"missing columns: {', '.join(sorted(missing))}")
        for row in reader:
            values = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            if any("\n" in value or "\r" in value for value in values.values()):
                reason = "a quoted field spans lines (an unclosed quote?)"
                raise _unreadable(reader.line_num, reason)
            yield reader.line_num, values
    except csv.Error as error:
        raise _unreadable(reader.line_num, f"malformed CSV: {error}") from None
    except UnicodeDecodeError:
        raise _unreadable(reader.line_num + 1, "not UTF-8 text") from None


def _text(row: dict[str, str], name: str, longest: int) -> str | None:
    """An optional text field under the API's own bounds: at most `longest` characters, no
    NUL (PostgreSQL text cannot hold it)."""
    value = row.get(name) or None
    if value is None:
        return None
    if "\x00" in value:
        raise ValueError(f"{name}: contains NUL")
    if len(value) > longest:
        raise ValueError(f"{name}: at most {longest} characters")
    return value


def _id(row: dict[str, str], name: str) -> str:
    """An id under the API's bound for member ids (order ids use the same characters)."""
    if not EXTERNAL_ID.match(row[name]):
        raise ValueError(f"{name}: 1-128 letters, digits or . _ : @ + -")
    return row[name]


def _moment(row: dict[str, str], name: str) -> dt.datetime | None:
    """An optional moment with a UTC offset that exists in UTC, as the API takes them."""
    if not row.get(name):
        return None
    try:
        moment = dt.datetime.fromisoformat(row[name])
    except ValueError:
        raise ValueError(f"{name}: not a time (2027-06-30T00:00:00+00:00)") from None
    if moment.tzinfo is None:
        raise ValueError(f"{name}: give a UTC offset (2027-06-30T00:00:00+00:00)")
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError(f"{name}: out of range") from None


def _member_row(row: dict[str, str]) -> dict[str, Any]:
    _id(row, "external_id")
    email = _text(row, "email", 320)
    if email and not EMAIL.match(email):
        raise ValueError("email: not an email address")
    try:
        birthday = dt.date.fromisoformat(row["birthday"]) if row.get("birthday") else None
    except ValueError:
        raise ValueError("birthday: not a date (1990-06-30)") from None
    if birthday and birthday > dt.date.today():  # noqa: DTZ011 - a calendar date, no time zone
        raise ValueError("birthday: in the future")
    status = row.get("status") or MemberStatus.ACTIVE.value
    if status not in {s.value for s in MemberStatus}:
        raise ValueError("status: active, suspended or closed")
    return {
        "external_id": row["external_id"],
        "email": email,
        "name": _text(row, "name", 200),
        "birthday": birthday,
        "status": status,
    }


def _whole(row: dict[str, str], name: str, most: int, unit: str) -> int:
    """A whole number from 0 to `most`, digits only (no sign, point or exponent)."""
    text = row[name]
    if not DIGITS.fullmatch(text):
        raise ValueError(f"{name}: a whole number of {unit}, 0 or more")
    # Measured before int(): a field of thousands of digits is past any bound (and past
    # what int() reads).
    if len(text) > len(str(most)) or int(text) > most:
        raise ValueError(f"{name}: at most {most}")
    return int(text)


def _balance_row(row: dict[str, str], now: dt.datetime) -> dict[str, Any]:
    _id(row, "external_id")
    points = _whole(row, "points", MAX_POINTS, "points")
    expires_at = _moment(row, "expires_at")
    if expires_at and expires_at <= now:
        raise ValueError("expires_at: already passed")
    return {"external_id": row["external_id"], "points": points, "expires_at": expires_at}


Parsed = tuple[int, dict[str, Any], dict[str, str]]  # line, parsed, the row as written


def _checked(
    stream: TextIO,
    required: set[str],
    parse: Callable[[dict[str, str]], dict[str, Any]],
    rejected: list[Rejected],
    key: str = "external_id",
) -> Iterator[Parsed]:
    """The rows `parse` accepts, each `key` once, as they are read (a file of a million
    orders is never held whole); the others are appended to `rejected` with their reason."""
    seen: set[str] = set()
    for line, row in _rows(stream, required):
        try:
            parsed = parse(row)
        except (ValueError, KeyError) as error:
            rejected.append(Rejected(line, row, str(error)))
            continue
        if parsed[key] in seen:
            rejected.append(Rejected(line, row, f"{key}: appears twice in the file"))
            continue
        seen.add(parsed[key])
        yield line, parsed, row


def _validate(
    stream: TextIO, required: set[str], parse: Callable[[dict[str, str]], dict[str, Any]]
) -> tuple[list[Parsed], list[Rejected]]:
    """Returns the valid rows as (line, parsed, row as written) and the rejected ones."""
    rejected: list[Rejected] = []
    valid = list(_checked(stream, required, parse, rejected))
    return valid, rejected


def _insert_ignore(
    session: Session, model: type[Base], rows: list[dict[str, Any]], key: str
) -> None:
    if rows:
        session.execute(insert_ignoring_conflicts(session, model, [key]), rows)


def _batches(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def import_members(
    session: Session,
    stream: TextIO,
    *,
    all_or_nothing: bool = True,
    batch_size: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import members (columns: external_id, and optionally email, name, birthday, status).
    Members already enrolled are skipped, not changed. Imported members get no signup
    points: they are not new to the shop. Raises ImportRejected (all-or-nothing only)."""
    valid, rejected = _validate(stream, {"external_id"}, _member_row)
    if rejected and all_or_nothing:
        raise ImportRejected(rejected)
    result = ImportResult(rejected=rejected)
    now = utcnow()
    with transaction(session):
        for batch in _batches([row for _, row, _ in valid], batch_size):
            ids = [row["external_id"] for row in batch]
            existing = set(
                session.execute(
                    sa.select(Member.external_id).where(Member.external_id.in_(ids))
                ).scalars()
            )
            new = [
                {**row, "metadata": {}, "enrolled_at": now, "updated_at": now}
                for row in batch
                if row["external_id"] not in existing
            ]
            _insert_ignore(session, Member, new, "external_id")
            created = session.execute(
                sa.select(Member.id).where(
                    Member.external_id.in_([row["external_id"] for row in new])
                )
            ).scalars()
            _insert_ignore(
                session,
                MemberBalance,
                [
                    {
                        "member_id": member_id,
                        "available": 0,
                        "pending": 0,
                        "held": 0,
                        "updated_at": now,
                    }
                    for member_id in created
                ],
                "member_id",
            )
            result.imported += len(new)
            result.skipped += len(batch) - len(new)
            if progress:
                progress(len(batch))
    return result


def import_balances(
    session: Session,
    stream: TextIO,
    *,
    all_or_nothing: bool = True,
    batch_size: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import opening balances (columns: external_id, points, optionally expires_at), each
    as one ledger transaction from the program's issued account into a new available lot.
    A member whose balance was imported before is skipped. Unknown members are rejected.
    Raises ImportRejected (all-or-nothing only)."""
    now = utcnow()
    valid, rejected = _validate(
        stream, {"external_id", "points"}, lambda row: _balance_row(row, now)
    )
    known: dict[str, int] = {}
    for batch in _batches([row["external_id"] for _, row, _ in valid], 5000):
        known.update(
            session.execute(
                sa.select(Member.external_id, Member.id).where(Member.external_id.in_(batch))
            ).all()
        )
    kept = []
    for line, row, as_written in valid:
        if row["external_id"] in known:
            kept.append({**row, "member_id": known[row["external_id"]]})
        else:
            rejected.append(Rejected(line, as_written, "external_id: no such member"))
    if rejected and all_or_nothing:
        raise ImportRejected(sorted(rejected, key=lambda r: r.line))
    result = ImportResult(rejected=sorted(rejected, key=lambda r: r.line))
    settings = get_settings(session)
    with transaction(session):
        for batch in _batches(kept, batch_size):
            written = _write_balances(session, settings, batch, now)
            result.imported += written
            result.skipped += len(batch) - written
            if progress:
                progress(len(batch))
    return result


def _write_balances(
    session: Session,
    settings: ProgramSettings,
    batch: list[dict[str, Any]],
    now: dt.datetime,
) -> int:
    member_ids = sorted(row["member_id"] for row in batch)
    # Lock the batch's balance rows in id order: live checkouts on these members wait, and
    # two imports cannot deadlock.
    balances = {
        b.member_id: b
        for b in session.execute(
            sa.select(MemberBalance)
            .where(MemberBalance.member_id.in_(member_ids))
            .order_by(MemberBalance.member_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalars()
    }
    done = set(
        session.execute(
            sa.select(LedgerTransaction.member_id).where(
                LedgerTransaction.member_id.in_(member_ids),
                LedgerTransaction.reference == BALANCE_REFERENCE,
            )
        ).scalars()
    )
    credits = [
        Credit(
            balances[row["member_id"]],
            row["points"],
            TransactionKind.IMPORT,
            Account.ISSUED,
            pending=False,
            expires_at=row["expires_at"],
            reference=BALANCE_REFERENCE,
            reason="opening balance imported",
            actor="import",
        )
        for row in batch
        if row["member_id"] not in done and row["points"] > 0
    ]
    if credits:
        credit_many(session, settings, credits, now)
        session.flush()
    return len(credits)


ORDER_COLUMNS = {"external_id", "order_id", "placed_at", "amount", "currency"}
IMPORTED_HASH = "import"
# An order earning through --earn has one line of its whole amount: the file has no lines.
IMPORTED_SKU = "imported-order"


def _order_row(row: dict[str, str], now: dt.datetime, currency: str) -> dict[str, Any]:
    external_id = _id(row, "external_id")
    order_id = _id(row, "order_id")
    if order_id in RESERVED_ORDER_IDS:
        raise ValueError(f"order_id: {order_id!r} names no order (it is an API path)")
    placed_at = _moment(row, "placed_at")
    if placed_at is None:
        raise ValueError("placed_at: required")
    if placed_at > now + CLOCK_SKEW:
        raise ValueError("placed_at: in the future")
    amount = _whole(row, "amount", MAX_AMOUNT, "minor units")
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
    rows = _checked(
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


def write_report(rejected: list[Rejected], stream: TextIO) -> None:
    """The rejected rows as CSV: line, reason, then the row's own columns."""
    columns = sorted({key for item in rejected for key in item.row})
    writer = csv.DictWriter(stream, fieldnames=["line", "reason", *columns])
    writer.writeheader()
    for item in rejected:
        writer.writerow({"line": item.line, "reason": item.reason, **item.row})
