"""Emptying the test database between tests and between hypothesis examples."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loyalty.extensions import db
from loyalty.program.config import new_version
from loyalty.program.models import ProgramSettings
from loyalty.program.services import DEFAULTS


def reset_settings(connection: Connection) -> None:
    connection.execute(
        sa.update(ProgramSettings).values(
            **DEFAULTS,
            # Tiers and rules were emptied: workers must not keep their copies.
            config_version=new_version(),
        )
    )


def emptied_tables() -> list[sa.Table]:
    """Every table but the settings, children before parents."""
    return [
        table
        for table in reversed(db.metadata.sorted_tables)
        if table.name != ProgramSettings.__tablename__
    ]


def delete_every_row(connection: Connection) -> None:
    """Delete every row but the settings (back to their defaults). For the few rows a
    hypothesis example writes this is far cheaper than the fixtures' TRUNCATE."""
    for table in emptied_tables():
        connection.execute(table.delete())
    reset_settings(connection)
