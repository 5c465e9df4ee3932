"""`loyalty demo`: demo data."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from loyalty.extensions import db

demo_cli = AppGroup("demo", help="Demo data.")


@demo_cli.command("seed")
@click.option(
    "--locale",
    "locale_code",
    type=click.Choice(["en", "zh_CN"]),
    default="en",
    show_default=True,
    help="The demo's language, currency and time zone: zh_CN is a program in CNY "
    "(Asia/Shanghai) with Chinese names; en keeps the program's currency.",
)
def demo_seed(locale_code: str) -> None:
    """Seed demo members and print one fresh API key per scope."""
    from loyalty.demo import LOCALES, seed
    from loyalty.errors import Conflict

    try:
        for line in seed(db.session(), locale=LOCALES[locale_code]):
            click.echo(line)
    except Conflict as refusal:
        raise click.ClickException(refusal.detail) from None
