"""`loyalty demo`: demo data."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from loyalty.extensions import db

demo_cli = AppGroup("demo", help="Demo data.")


@demo_cli.command("seed")
def demo_seed() -> None:
    """Seed demo members and print one fresh API key per scope."""
    from loyalty.demo import seed

    for line in seed(db.session()):
        click.echo(line)
