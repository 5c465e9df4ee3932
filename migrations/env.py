"""Alembic environment. Run through `loyalty db upgrade`, which hands us a connection; plain
`alembic` (with alembic.ini) builds the app to find the database."""

from __future__ import annotations

from alembic import context

from loyalty.db import UTCDateTime
from loyalty.extensions import db

config = context.config
target_metadata = db.metadata


def render_item(type_, obj, autogen_context):  # type: ignore[no-untyped-def]
    """Migrations spell plain SQLAlchemy types, never the app's own classes."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_item=render_item,
        compare_type=True,
        compare_server_default=True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Two deploys migrating at once must not interleave; fail fast on lock waits.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7319)")
            connection.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    from loyalty import create_app

    app = create_app()
    with app.app_context(), db.engine.begin() as new_connection:
        run(new_connection)
