"""Alembic, driven from the app: the schema only ever comes from migrations."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database behind `engine` to `revision`."""
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def pending_migrations(connection: Connection) -> list[str]:
    """Revisions the database still lacks (empty when it is at head)."""
    script = ScriptDirectory.from_config(alembic_config())
    current = set(MigrationContext.configure(connection).get_current_heads())
    heads = set(script.get_heads())
    if current == heads:
        return []
    applied: set[str] = set()
    for revision in current:
        applied.update(rev.revision for rev in script.iterate_revisions(revision, "base"))
    return [rev.revision for rev in script.walk_revisions() if rev.revision not in applied]
