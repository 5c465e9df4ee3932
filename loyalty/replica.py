"""Reads that may lag, from a streaming replica: whether the replica may serve them now.

The HTTP layer (loyalty.api.replica) asks a ``ReplicaRouter`` before each view marked
``reads_from_replica``; everything else reads and writes on the primary. The router answers
from the replica's health, probed at most once a second per process (a down replica is
tried again after a few seconds), never on every request:

- *down*: the probe (or a request) could not connect to it;
- *lagging*: it is further behind than the allowed lag. Lag is how long ago the replica
  replayed its latest transaction, but only while it has not replayed everything the primary
  had written when the probe began: an idle primary writes nothing, so the replay timestamp of
  a replica that is fully caught up grows old without it being behind;
- *read your writes*: the caller wrote at a WAL position (LSN) the replica has not replayed.

Every transaction on the replica is READ ONLY (as a hot standby's are anyway), so a marked
view that writes fails wherever its reads go, and the suite, whose "replica" is a second
connection pool on the test database, catches it.
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, ExceptionContext
from sqlalchemy.exc import DBAPIError

from loyalty import metrics
from loyalty.db import in_utc, ping_idle_connections

PROBE_INTERVAL_SECONDS = 1.0
# A replica that refused or timed out is not tried for this long: a request in each process
# pays the connect timeout (LOYALTY_REPLICA_CONNECT_TIMEOUT in loyalty.config) at most so often.
DOWN_RETRY_SECONDS = 5.0


class Target(enum.StrEnum):
    REPLICA = "replica"
    PRIMARY = "primary"


class Fallback(enum.StrEnum):
    """Why a read that may lag went to the primary."""

    DOWN = "down"
    LAGGING = "lagging"
    READ_YOUR_WRITES = "read_your_writes"


@dataclass(frozen=True)
class ReplicaHealth:
    lag_seconds: float
    # The WAL position the replica has replayed (a server not in recovery: its own position).
    replayed: int


Probe = Callable[[], ReplicaHealth | None]


def parse_lsn(text: str) -> int:
    """A PostgreSQL WAL position (``16/B374D848``, a pg_lsn as text) as one comparable number."""
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def health_of(
    primary_position: int, in_recovery: bool, replayed: int, seconds_since_replay: float | None
) -> ReplicaHealth:
    """The replica's health from what the probe read: first the primary's WAL position, then
    the replica's state. Caught up (lag 0) when it has replayed that position, or when it is
    no standby at all; else the age of its latest replayed transaction (unknown: infinite)."""
    if not in_recovery or replayed >= primary_position:
        return ReplicaHealth(0.0, replayed)
    if seconds_since_replay is None:
        return ReplicaHealth(math.inf, replayed)
    return ReplicaHealth(max(seconds_since_replay, 0.0), replayed)


PRIMARY_POSITION = "SELECT pg_current_wal_lsn()::text"
# After a commit: the insert position covers the commit record even with synchronous_commit
# off, where the write position may not yet.
PRIMARY_WRITTEN = "SELECT pg_current_wal_insert_lsn()::text"
REPLICA_STATE = """
SELECT pg_is_in_recovery(),
       (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
             ELSE pg_current_wal_lsn() END)::text,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
"""


def postgres_probe(replica: Engine, primary: Callable[[], Engine]) -> Probe:
    """Probe a PostgreSQL replica: two one-row queries, one on each server. None when the
    replica cannot be reached; an unreachable primary raises, as any request on it would."""

    def probe() -> ReplicaHealth | None:
        with primary().connect() as connection:
            position = parse_lsn(connection.exec_driver_sql(PRIMARY_POSITION).scalar_one())
        try:
            with replica.connect() as connection:
                in_recovery, replayed, since = connection.exec_driver_sql(REPLICA_STATE).one()
        except DBAPIError:
            return None
        return health_of(position, in_recovery, parse_lsn(replayed or "0/0"), since)

    return probe


def same_database_probe(replica: Engine) -> Probe:
    """SQLite has no replicas (loyalty.config refuses one): only the test suite points a second
    engine at the same file, which is never behind. None when it cannot be opened."""

    def probe() -> ReplicaHealth | None:
        try:
            with replica.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except DBAPIError:
            return None
        return ReplicaHealth(0.0, 0)

    return probe


def primary_written(primary: Engine) -> int | None:
    """The primary's WAL position now, to call after a commit: a replica that has replayed it
    has that commit. None on SQLite, which has no replicas."""
    if primary.dialect.name != "postgresql":
        return None
    with primary.connect() as connection:
        return parse_lsn(connection.exec_driver_sql(PRIMARY_WRITTEN).scalar_one())


class ReplicaRouter:
    """Decides, per read that may lag, between the replica and the primary (``choose``).

    One per process (its cache is the process's view of the replica); `probe` and `clock`
    are the tests' to replace.
    """

    def __init__(
        self,
        engine: Engine,
        probe: Probe,
        max_lag_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.probe = probe
        self.max_lag_seconds = max_lag_seconds
        self.clock = clock
        self._health: ReplicaHealth | None = None
        self._probed_at: float | None = None
        # Reentrant: a failing probe's connect error reaches _on_error (mark_down) inside it.
        self._lock = threading.RLock()
        event.listen(engine, "handle_error", self._on_error)

    def choose(self, written: int | None = None) -> tuple[Target, Fallback | None]:
        """Where a read that may lag goes, and why not to the replica when it does not.

        `written`: the WAL position of the caller's latest write, which the replica must have
        replayed (checked again, fresh, when the cached health says it has not).
        """
        health = self._cached()
        if health is not None and written is not None and health.replayed < written:
            health = self._probe()
        if health is None:
            return Target.PRIMARY, Fallback.DOWN
        if health.lag_seconds > self.max_lag_seconds:
            return Target.PRIMARY, Fallback.LAGGING
        if written is not None and health.replayed < written:
            return Target.PRIMARY, Fallback.READ_YOUR_WRITES
        return Target.REPLICA, None

    def mark_down(self) -> None:
        """The replica failed a request: reads go to the primary until it is tried again."""
        with self._lock:
            self._set(None)

    def _cached(self) -> ReplicaHealth | None:
        with self._lock:
            if self._probed_at is not None:
                wait = DOWN_RETRY_SECONDS if self._health is None else PROBE_INTERVAL_SECONDS
                if self.clock() - self._probed_at < wait:
                    return self._health
            return self._probe()

    def _probe(self) -> ReplicaHealth | None:
        with self._lock:
            return self._set(self.probe())

    def _set(self, health: ReplicaHealth | None) -> ReplicaHealth | None:
        self._health, self._probed_at = health, self.clock()
        metrics.REPLICA_LAG.set(math.nan if health is None else health.lag_seconds)
        return health

    def _on_error(self, context: ExceptionContext) -> None:
        # A connection that could not be made, or was lost: the replica is away. Errors of
        # a statement (a write refused as read-only, a timeout) say nothing about it.
        if context.is_disconnect or context.connection is None:
            self.mark_down()


def replica_engine(url: str, options: dict[str, Any]) -> Engine:
    """An engine on the replica whose every transaction is read-only.

    PostgreSQL: SET TRANSACTION READ ONLY opens each transaction (transaction-scoped, so
    PgBouncer's transaction pooling is fine), and idle connections are pinged as the
    primary's are. SQLite (the test suite's stand-in only): the connection is query_only, and
    transactions are plain deferred BEGINs, not the primary's write-locking BEGIN IMMEDIATE.
    """
    engine = sa.create_engine(url, **options)
    if engine.dialect.name == "postgresql":
        ping_idle_connections(engine)
        in_utc(engine)

        @event.listens_for(engine, "begin")
        def _read_only(connection: Any) -> None:
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")

        return engine

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine
