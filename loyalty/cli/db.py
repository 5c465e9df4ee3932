"""`loyalty db`: the database schema."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from loyalty.extensions import db

db_cli = AppGroup("db", help="Database schema.")


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database to REVISION (default: head)."""
    from loyalty.migrate import upgrade

    upgrade(db.engine, revision)
    click.echo(f"database at {revision}")
