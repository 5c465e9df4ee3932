"""Database plumbing: the declarative base, column types and the transaction scope.

Every service runs its use case inside ``transaction()``: the outermost scope commits on
success and rolls back on any exception. Scopes nest: the HTTP layer opens one scope per
write request, so the services' work (and, under an Idempotency-Key, the stored response)
commits once, atomically, when the request ends.
"""

from __future__ import annotations

import datetime as dt
import enum
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, QueryableAttribute, Session, registry, scoped_session
from sqlalchemy.sql.compiler import SQLCompiler

from loyalty import days

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only aliases ROWID (and so autoincrements) for a column declared exactly INTEGER.
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def among(
    session: Session, column: sa.ColumnElement[int] | QueryableAttribute[int], ids: Sequence[int]
) -> sa.ColumnElement[bool]:
    """``column IN ids`` for a batch of ids. On PostgreSQL one array parameter (``= ANY``):
    an IN list is a placeholder per id, so each batch's statement is new text that the
    driver parses again, at several milliseconds for 500 ids."""
    if session.get_bind().dialect.name == "postgresql":
        return column == sa.any_(
            sa.bindparam(None, list(ids), type_=postgresql.ARRAY(sa.BigInteger))
        )
    return column.in_(ids)


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every database.

    SQLite stores no offset, so values come back naive; they are UTC by construction.
    Naive values are refused on the way in so no local time can slip into the ledger.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: times are timezone-aware UTC")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


AnEnum = TypeVar("AnEnum", bound=enum.StrEnum)


class StrEnumType(sa.TypeDecorator[AnEnum]):
    """A status or kind: stored as its value in a VARCHAR, read back as the enum.

    No database enum type, so a new value needs no migration; the enum refuses a value it
    does not know on the way in.
    """

    impl = sa.String
    cache_ok = True

    def __init__(self, enum_class: type[AnEnum], length: int = 16) -> None:
        super().__init__(length)
        self.enum_class = enum_class

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else self.enum_class(value).value

    def process_result_value(self, value: Any, dialect: Any) -> AnEnum | None:
        return None if value is None else self.enum_class(value)


class Base(DeclarativeBase):
    # Every model maps one table: said here, so Core statements on a model's table type-check.
    __table__: ClassVar[sa.Table]

    registry = registry(
        metadata=sa.MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={dt.datetime: UTCDateTime()},
    )


# A connection back in use within this many seconds is not pinged first: a busy worker's
# is (a request every few milliseconds). A database restart takes far longer, and a request
# that meets a dead connection meanwhile (a 503) makes the pool drop every connection older
# than it.
PING_AFTER_IDLE_SECONDS = 0.2


def ping_idle_connections(engine: Engine) -> None:
    """Ping a pooled connection before handing it out only when it sat idle, so that after
    a database restart no stale connection is handed out, without the round trip that
    ``pool_pre_ping`` adds to every request of a busy worker."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            # The pool discards this connection and checks out another (a new one).
            raise DisconnectionError("stale pooled connection") from error


def in_utc(engine: Engine) -> None:
    """Make every PostgreSQL session UTC, so date() of a timestamp is the UTC day on every
    server. A direct connection asks for it at startup (``options``, see loyalty.config);
    through PgBouncer, which refuses that startup parameter, a new connection sets it once.
    That SET outlives its transaction, yet is safe under transaction pooling: TimeZone is one
    of the parameters PgBouncer tracks per client and sets again on whichever server session
    the client's next transaction runs on."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if dbapi_connection.info.parameter_status("TimeZone") == "UTC":
            return
        dbapi_connection.execute("SET TIME ZONE 'UTC'")
        dbapi_connection.commit()


def configure_engine(engine: Engine) -> None:
    """Ping idle PostgreSQL connections and keep them in UTC (above); make SQLite behave like
    a database that can take concurrent writers.

    pysqlite's own transaction handling starts transactions late and lazily, so two writers
    both read, then one fails at its first write with "database is locked". We emit
    ``BEGIN IMMEDIATE`` ourselves: writers queue on the database lock (busy_timeout) and
    serialize, which is SQLite's equivalent of PostgreSQL's row locks.
    """
    if engine.dialect.name != "sqlite":
        ping_idle_connections(engine)
        in_utc(engine)
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
        dbapi_connection.create_function(
            _SQLITE_LOCAL_DAY, 2, _sqlite_local_day, deterministic=True
        )

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class utc_day(sa.sql.functions.FunctionElement[int]):
    """The UTC calendar day of a timestamp, as days since 1970-01-01 (an integer, so day
    differences are plain subtraction on every database)."""

    type = sa.Integer()
    inherit_cache = True
    name = "utc_day"


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    moment = compiler.process(next(iter(element.clauses)), **kw)
    return f"(({moment} AT TIME ZONE 'UTC')::date - DATE '1970-01-01')"


@compiles(utc_day)
def _utc_day_sqlite(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite stores the UTC time as text; julianday of a date is N.5 exactly.
    moment = compiler.process(next(iter(element.clauses)), **kw)
    return f"CAST(julianday(date({moment})) - 2440587.5 AS INTEGER)"


class local_day(sa.sql.functions.FunctionElement[int]):
    """The calendar day of a timestamp in a named time zone (the second argument), as days
    since 1970-01-01."""

    type = sa.Integer()
    inherit_cache = True
    name = "local_day"


@compiles(local_day, "postgresql")
def _local_day_postgresql(element: local_day, compiler: SQLCompiler, **kw: Any) -> str:
    moment, zone = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"(({moment} AT TIME ZONE {zone})::date - DATE '1970-01-01')"


# SQLite has no time zones: each connection gets this Python function (configure_engine).
_SQLITE_LOCAL_DAY = "loyalty_local_day"


@compiles(local_day)
def _local_day_sqlite(element: local_day, compiler: SQLCompiler, **kw: Any) -> str:
    moment, zone = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"{_SQLITE_LOCAL_DAY}({moment}, {zone})"


def _sqlite_local_day(stored: str | None, zone: str) -> int | None:
    if stored is None:
        return None
    moment = dt.datetime.fromisoformat(stored).replace(tzinfo=dt.UTC)
    return (days.today(moment, days.zone(zone)) - days.EPOCH).days


def day_number(moment: Any, tz: dt.tzinfo) -> sa.ColumnElement[int]:
    """The calendar day of the timestamp `moment` in the program's zone `tz`, as days since
    1970-01-01 (``days.EPOCH``): in SQL on PostgreSQL and SQLite. UTC keeps the plain,
    cheaper spelling."""
    name = days.zone_name(tz)
    if name == days.DEFAULT_ZONE:
        return utc_day(moment)
    return local_day(moment, sa.literal(name, sa.String()))


M = TypeVar("M", bound=Base)

_DEPTH = "loyalty.transaction_depth"


@contextmanager
def transaction(session: Session, *, savepoint: bool = False) -> Iterator[Session]:
    """Run a unit of work: commit at the end of the outermost scope, roll back on any error.

    An inner scope (a use case called by another, or any service inside a write request,
    whose scope the HTTP layer opens: ``open_scope``) joins the outer one, so a request
    commits once, whether or not it carried an Idempotency-Key. With `savepoint`, an inner
    scope is a savepoint, for work whose failure the caller handles itself (a lost insert
    race): the error rolls back to the savepoint and propagates, and the outer transaction
    stays usable.
    """
    depth = session.info.get(_DEPTH, 0)
    session.info[_DEPTH] = depth + 1
    try:
        if depth:
            if savepoint:
                with session.begin_nested():
                    yield session
            else:
                yield session
            return
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
    finally:
        session.info[_DEPTH] = depth


Row = TypeVar("Row")


def in_claimed_batches(
    session: Session, select: sa.Select[Row], size: int, work: Callable[[list[Row]], int]
) -> int:
    """Claim the rows `select` finds, `size` at a time, and `work` each batch in a
    transaction of its own, until a batch comes back short. Returns the sum of what `work`
    returned.

    The rows are claimed ``FOR UPDATE SKIP LOCKED``, so workers running at once never take
    the same rows; `work` marks them done, so the next batch does not find them again.
    """
    total = 0
    while True:
        with transaction(session):
            rows = list(
                session.execute(select.limit(size).with_for_update(skip_locked=True)).scalars()
            )
            total += work(rows)
        if len(rows) < size:
            return total


def open_scope(session: Session) -> None:
    """Start an outer scope that the caller ends with ``close_scope`` and commits or rolls
    back itself (the HTTP layer, across its request hooks)."""
    session.info[_DEPTH] = session.info.get(_DEPTH, 0) + 1


def close_scope(session: Session) -> None:
    session.info[_DEPTH] = max(session.info.get(_DEPTH, 1) - 1, 0)


_TRANSACTION_CACHE = "loyalty.transaction_cache"


def transaction_cache(session: Session | scoped_session[Session]) -> dict[str, Any]:
    """A dict that lives as long as the session's current transaction, for what a request
    reads once and uses again (the program's configuration, members' external ids).

    Keyed on the session's transaction object, not on its Connection: a session joined to
    an outer transaction (the test suite's, or any caller's) keeps one Connection across
    many of its own transactions, and what one of them read (an external id of a row that
    was rolled back since) must not leak into the next.
    """
    session.connection()  # begins the transaction if none is open yet
    # Services get Flask-SQLAlchemy's scoped_session, which does not proxy get_transaction.
    real = session() if isinstance(session, scoped_session) else session
    current = real.get_transaction()
    cached = session.info.get(_TRANSACTION_CACHE)
    if cached is None or cached[0] is not current:
        cached = session.info[_TRANSACTION_CACHE] = (current, {})
    values: dict[str, Any] = cached[1]
    return values


_INSERT_RETURNING_ID: dict[type[Any], sa.Insert] = {}


def insert_copy(session: Session, model: type[M], values: dict[str, Any]) -> M:
    """Insert one row of `model` with Core and return a read-only copy of it, not in the
    session: on the hot paths the unit of work's flush cost three times the CPU of the
    same insert. `values` must name every column the caller reads back."""
    statement = _INSERT_RETURNING_ID.get(model)
    if statement is None:
        primary_key = sa.inspect(model).primary_key[0]
        statement = _INSERT_RETURNING_ID[model] = sa.insert(model).returning(primary_key)
    row_id = session.connection().execute(statement, values).scalar_one()
    return model(id=row_id, **values)


_INSERT_MANY_RETURNING_IDS: dict[type[Any], sa.Insert] = {}


def insert_copies(session: Session, model: type[M], rows: Sequence[dict[str, Any]]) -> list[M]:
    """``insert_copy`` for many rows: one statement for a single row, one batched INSERT ...
    RETURNING (ids in the rows' order) for more."""
    if len(rows) == 1:
        return [insert_copy(session, model, rows[0])]
    statement = _INSERT_MANY_RETURNING_IDS.get(model)
    if statement is None:
        primary_key = sa.inspect(model).primary_key[0]
        statement = _INSERT_MANY_RETURNING_IDS[model] = model.__table__.insert().returning(
            primary_key, sort_by_parameter_order=True
        )
    ids = session.connection().execute(statement, list(rows)).scalars().all()
    return [model(id=row_id, **row) for row_id, row in zip(ids, rows, strict=True)]


_IGNORING_CONFLICTS: dict[tuple[str, type[Any], tuple[str, ...]], sa.Insert] = {}


def insert_ignoring_conflicts(
    session: Session, model: type[Any], index_elements: Sequence[str]
) -> sa.Insert:
    """An INSERT that skips rows whose `index_elements` exist (ON CONFLICT DO NOTHING on
    PostgreSQL and SQLite alike). Built once per dialect: hot paths claim with it."""
    name = session.get_bind().dialect.name
    key = (name, model, tuple(index_elements))
    statement = _IGNORING_CONFLICTS.get(key)
    if statement is None:
        dialect = postgresql if name == "postgresql" else sqlite
        statement = _IGNORING_CONFLICTS[key] = dialect.insert(model).on_conflict_do_nothing(
            index_elements=list(index_elements)
        )
    return statement
