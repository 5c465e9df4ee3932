"""Database plumbing: the declarative base, column types and the transaction scope.

Every service runs its use case inside ``transaction()``: the outermost scope commits on
success and rolls back on any exception. Scopes nest, so the HTTP layer can open an outer
scope (for an Idempotency-Key) and have the service's work and the stored response commit
together, atomically.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, registry, scoped_session

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


class Base(DeclarativeBase):
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


def configure_engine(engine: Engine) -> None:
    """Ping idle PostgreSQL connections (above); make SQLite behave like a database that
    can take concurrent writers.

    pysqlite's own transaction handling starts transactions late and lazily, so two writers
    both read, then one fails at its first write with "database is locked". We emit
    ``BEGIN IMMEDIATE`` ourselves: writers queue on the database lock (busy_timeout) and
    serialize, which is SQLite's equivalent of PostgreSQL's row locks.
    """
    if engine.dialect.name != "sqlite":
        ping_idle_connections(engine)
        return

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


M = TypeVar("M", bound=DeclarativeBase)

_DEPTH = "loyalty.transaction_depth"


@contextmanager
def transaction(session: Session) -> Iterator[Session]:
    """Run a unit of work: commit at the end of the outermost scope, roll back on any error.

    An inner scope joins the outer one as a savepoint; an exception raised inside it rolls
    back to the savepoint and propagates.
    """
    depth = session.info.get(_DEPTH, 0)
    session.info[_DEPTH] = depth + 1
    try:
        if depth:
            # A savepoint, so a failure the service handles itself (a lost insert race, say)
            # does not poison the outer transaction.
            with session.begin_nested():
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


def open_outer_scope(session: Session) -> None:
    """Start a scope that the caller ends with ``close_outer_scope`` (used across hooks)."""
    session.info[_DEPTH] = session.info.get(_DEPTH, 0) + 1


def close_outer_scope(session: Session) -> None:
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


def in_outer_scope(session: Session) -> bool:
    return bool(session.info.get(_DEPTH, 0))
