"""The schema comes only from the migrations: they must build exactly what the models
describe, leave nothing pending, and go down to nothing and up again cleanly."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask import Flask

from loyalty.extensions import db
from loyalty.migrate import alembic_config, pending_migrations, upgrade
from loyalty.program.models import ProgramSettings
from tests.conftest import _postgres_database
from tests.helpers import app_built


def model_differences(connection: sa.Connection) -> list[object]:
    """What autogenerate would put in a new migration (types and server defaults included,
    as migrations/env.py compares them)."""
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return compare_metadata(context, db.metadata)


# Opens its own connection.
@pytest.mark.committed
def test_the_migrated_schema_matches_the_models(app, session):
    with db.engine.connect() as connection:
        assert model_differences(connection) == []


@pytest.mark.committed
def test_no_migration_is_pending_after_upgrade(app, session):
    with db.engine.connect() as connection:
        assert pending_migrations(connection) == []


@pytest.fixture(params=["sqlite", "postgresql"])
def throwaway_app(request: pytest.FixtureRequest, tmp_path) -> Iterator[Flask]:
    """An app on its own empty database, so going down to base breaks nothing shared."""
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path / 'migrations.db'}"])
    else:
        urls = _postgres_database()
    try:
        with app_built(next(urls)) as app:
            yield app
    finally:
        for _ in urls:  # runs the generator's cleanup: drops the PostgreSQL database
            pass


def test_migrations_go_down_to_base_and_up_again(throwaway_app):
    with throwaway_app.app_context():
        upgrade(db.engine)
        with db.engine.begin() as connection:
            command.downgrade(alembic_config(connection), "base")
        with db.engine.connect() as connection:
            assert sa.inspect(connection).get_table_names() == ["alembic_version"]
            assert pending_migrations(connection) != []

        upgrade(db.engine)

        with db.engine.connect() as connection:
            assert pending_migrations(connection) == []
            assert model_differences(connection) == []
        assert db.session.get(ProgramSettings, 1) is not None
        db.session.remove()


def test_the_referrals_migration_gives_earlier_members_codes_and_their_referrals(
    throwaway_app,
):
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    with throwaway_app.app_context():
        with db.engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0028")
            members = sa.Table("members", sa.MetaData(), autoload_with=connection)
            for external_id, referred_by_id in (("host", None), ("friend", 1)):
                connection.execute(
                    members.insert().values(
                        external_id=external_id,
                        referred_by_id=referred_by_id,
                        metadata={},
                        status="active",
                        enrolled_at=now,
                        updated_at=now,
                    )
                )
            command.upgrade(alembic_config(connection), "head")
        with db.engine.connect() as connection:
            codes = connection.execute(sa.text("SELECT referral_code FROM members")).scalars()
            referrals = connection.execute(
                sa.text("SELECT referrer_id, referred_id, status, order_id FROM referrals")
            ).all()
        db.session.remove()

    assert len(set(codes)) == 2
    assert [tuple(row) for row in referrals] == [(1, 2, "linked", None)]
