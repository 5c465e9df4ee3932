"""`loyalty ledger`: the points ledger."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from loyalty.extensions import db

ledger_cli = AppGroup("ledger", help="The points ledger.")


@ledger_cli.command("verify")
def ledger_verify() -> None:
    """Check every ledger invariant; exit 1 on any breach."""
    from loyalty.ledger.verify import verify

    report = verify(db.session())
    for problem in report.problems:
        click.echo(f"BREACH {problem}", err=True)
    click.echo(
        f"checked {report.transactions} transactions and {report.members} members: "
        + ("ok" if report.ok else f"{len(report.problems)} breaches")
    )
    if not report.ok:
        sys.exit(1)
