"""Reads that may lag go to the read replica: the views marked ``@reads_from_replica``.

Reports, insight and segments, the admin member list and its CSV, the audit log, and the
console's pages of them. Everything else stays on the primary, the authentication and
session bookkeeping of a marked request included: they run before the view. A member's own
card, history, lots and benefits are never marked: the checkout and the customer app read
them right after writing (and the card settles due lots, which writes).

Console sessions read their own writes: after each console write (a POST) the primary's
WAL position is kept in the session's cookie, and a marked page of that session is served
by the replica only once the replica has replayed that position, else by the primary. The
API's callers are machines that do not read a report back after a write; their reads lag by
at most LOYALTY_REPLICA_MAX_LAG_SECONDS.

Each marked request counts in ``loyalty_db_reads_total{target}`` (and, on the primary for
want of the replica, ``loyalty_replica_fallbacks_total{reason}``) and its log line says
``"db": "replica"`` or ``"primary"``. A replica lost in the middle of a request fails it
with the 503 of a database outage (loyalty.api.errors); the router marks the replica down,
so the next request reads from the primary.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request, session
from sqlalchemy.exc import DBAPIError

from loyalty import metrics
from loyalty.extensions import READ_BIND, db
from loyalty.replica import (
    ReplicaRouter,
    Target,
    postgres_probe,
    primary_written,
    replica_engine,
    same_database_probe,
)

F = TypeVar("F", bound=Callable[..., Any])
EXTENSION = "loyalty.replica"
# The console session's entry: the primary's WAL position after the session's latest write.
WRITTEN = "primary_written"
log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Route marked views' reads to REPLICA_DATABASE_URI when the config names one."""
    url = app.config.get("REPLICA_DATABASE_URI")
    if url:
        engine = replica_engine(url, app.config["REPLICA_ENGINE_OPTIONS"])
        probe = (
            postgres_probe(engine, lambda: db.engine)
            if engine.dialect.name == "postgresql"
            else same_database_probe(engine)
        )
        attach(app, ReplicaRouter(engine, probe, app.config["REPLICA_MAX_LAG_SECONDS"]))
    # The replica is not left at the end of the request, whose streamed body (a CSV) is read
    # after its teardown has run: Flask pushes the contexts again to stream it.
    app.before_request(_start_on_the_primary)


def attach(app: Flask, router: ReplicaRouter) -> None:
    app.extensions[EXTENSION] = router


def detach(app: Flask) -> ReplicaRouter | None:
    router: ReplicaRouter | None = app.extensions.pop(EXTENSION, None)
    return router


def reads_from_replica(view: F) -> F:
    """Mark a view whose reads may lag: the replica serves it when it is up, caught up within
    the allowed lag, and (for the console) has this session's latest write. The view must not
    write: the replica's transactions are read-only."""

    @functools.wraps(view)
    def routed(*args: Any, **kwargs: Any) -> Any:
        _route()
        return view(*args, **kwargs)

    routed.reads_from_replica = True  # type: ignore[attr-defined]
    return routed  # type: ignore[return-value]


def is_marked(view: Any) -> bool:
    return getattr(view, "reads_from_replica", False) is True


def _route() -> None:
    router: ReplicaRouter | None = current_app.extensions.get(EXTENSION)
    target, fallback = Target.PRIMARY, None
    if router is not None:
        target, fallback = router.choose(_written())
    g.db_target = target
    metrics.DB_READS.labels(target.value).inc()
    if fallback is not None:
        metrics.REPLICA_FALLBACKS.labels(fallback.value).inc()
    if router is not None and target is Target.REPLICA:
        db.session().info[READ_BIND] = router.engine


def _written() -> int | None:
    # Only the console has a session; reading it elsewhere would add Vary: Cookie.
    if request.blueprint != "console":
        return None
    written = session.get(WRITTEN)
    return written if isinstance(written, int) else None


def _start_on_the_primary() -> None:
    """Before anything reads: a session that outlived its request (one app context around
    several, as in tests; Flask-SQLAlchemy removes it with the app context otherwise) leaves
    the replica to this request's views."""
    g.pop("db_target", None)
    if not db.session.registry.has() or READ_BIND not in db.session().info:
        return
    del db.session().info[READ_BIND]
    try:
        db.session().rollback()  # the replica's read-only transaction: nothing to keep
    except DBAPIError as error:
        log.warning("replica transaction not rolled back: %s", error.__class__.__name__)


def remember_console_write(response: Response) -> Response:
    """After a console write, keep the primary's WAL position in the session (WRITTEN)."""
    if request.method != "POST" or EXTENSION not in current_app.extensions:
        return response
    try:
        written = primary_written(db.engine)
    except DBAPIError as error:
        # The write committed, then the primary went away: reads fail over there as well.
        log.warning("primary position not read: %s", error.__class__.__name__)
        return response
    if written is not None:
        session[WRITTEN] = written
    return response
