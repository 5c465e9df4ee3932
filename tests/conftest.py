"""Shared fixtures. Every database test runs twice: on SQLite and on PostgreSQL.

PostgreSQL comes from LOYALTY_TEST_DATABASE_URL (default: the local `test` database). Each
run creates its own throwaway database there, so parallel runs never collide. Where
PostgreSQL is unreachable its tests are skipped, except with CI=true, where that fails the run.
The schema always comes from the Alembic migrations.

Each test runs in one transaction that is rolled back at its end (see ``_rolled_back``): the
services' commits release savepoints inside it. A test whose point is real commits (racing
threads, subprocesses, a served app, a connection of its own) is marked
``@pytest.mark.committed``: it commits for real and the tables are emptied after it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from loyalty import config
from loyalty.extensions import db
from loyalty.migrate import upgrade
from tests.database import delete_every_row, emptied_tables, reset_settings
from tests.helpers import assert_ledger_verifies, build_app

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def _postgres_database() -> Iterator[str]:
    base = config.database_url(os.environ.get("LOYALTY_TEST_DATABASE_URL", DEFAULT_PG))
    admin = sa.create_engine(
        base, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except sa.exc.OperationalError as error:
        admin.dispose()
        message = f"PostgreSQL unreachable at {base}: {error.orig}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    name = f"loyalty_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield str(sa.engine.make_url(base).set(database=name).render_as_string(hide_password=False))
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'loyalty.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture(scope="session")
def migrated_app(database_url: str) -> Iterator[Flask]:
    app = build_app(database_url)
    with app.app_context():
        upgrade(db.engine)
    yield app
    with app.app_context():
        db.engine.dispose()


def _reset(app: Flask) -> None:
    """Empty every table but keep the migrated schema and the settings row (at defaults)."""
    with app.app_context(), db.engine.begin() as connection:
        if connection.dialect.name != "postgresql":
            delete_every_row(connection)
            return
        names = ", ".join(f'"{t.name}"' for t in emptied_tables())
        connection.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        reset_settings(connection)


@contextmanager
def _rolled_back(app: Flask) -> Iterator[None]:
    """Run the test inside one transaction on one connection, rolled back at the end.

    Flask-SQLAlchemy's sessions take their bind from ``db.engines``: the test's connection
    stands in for the engine there, so every session (the test's own and each test-client
    request's) runs on it. ``join_transaction_mode="create_savepoint"`` makes a session's
    commit and rollback release or roll back a savepoint, never the outer transaction.
    On SQLite the outer ``begin`` emits BEGIN IMMEDIATE (loyalty.db.configure_engine), so the
    test holds the write lock throughout: a second connection would wait for it, which is
    why tests that need one are marked ``committed``.
    """
    engines = db._app_engines[app]  # what db.engines reads; no public way to swap a bind
    engine = engines[None]
    factory = db.session.session_factory
    with engine.connect() as connection:
        outer = connection.begin()
        engines[None] = connection  # type: ignore[assignment]
        factory.configure(join_transaction_mode="create_savepoint")
        try:
            yield
        finally:
            factory.kw.pop("join_transaction_mode", None)
            engines[None] = engine
            outer.rollback()


@pytest.fixture
def app(migrated_app: Flask, request: pytest.FixtureRequest) -> Iterator[Flask]:
    """The app, its database empty but for the settings row.

    By default the test runs in a rolled-back transaction (``_rolled_back``). A test marked
    ``committed`` (threads, subprocesses, its own connections) commits for real and the
    tables are emptied after it, so the next test starts from empty tables either way.
    """
    dialect = migrated_app.config["SQLALCHEMY_DATABASE_URI"].split(":")[0].split("+")[0]
    if request.node.get_closest_marker("postgresql_only") and dialect != "postgresql":
        pytest.skip("needs PostgreSQL row locks")
    if request.node.get_closest_marker("committed"):
        try:
            yield migrated_app
        finally:
            _reset(migrated_app)
        return
    with _rolled_back(migrated_app):
        yield migrated_app


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    with app.app_context():
        yield db.session


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def dialect(app: Flask) -> str:
    with app.app_context():
        return db.engine.dialect.name


@pytest.fixture
def ledger_verifies_after_each_test(app: Flask) -> Iterator[None]:
    """Use it (``pytest.mark.usefixtures``) where every test must leave a ledger that verifies."""
    yield
    assert_ledger_verifies(app)
