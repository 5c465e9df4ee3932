"""`loyalty keys`: API keys."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from loyalty.auth.models import KEY_SCOPES
from loyalty.errors import LoyaltyError
from loyalty.extensions import db

keys_cli = AppGroup("keys", help="API keys.")


@keys_cli.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice([scope.value for scope in KEY_SCOPES]),
)
def keys_create(name: str, scopes: tuple[str, ...]) -> None:
    """Create an API key; the key is printed once, alone on the last line."""
    from loyalty.auth.services import create_key

    try:
        key, raw = create_key(db.session(), name, scopes)
    except LoyaltyError as error:
        raise click.ClickException(error.detail) from None
    listed = " ".join(key.scopes)
    click.echo(f"created key {key.name!r} with scopes {listed}; it is shown only now:")
    click.echo(raw)


@keys_cli.command("list")
def keys_list() -> None:
    """List API keys (never the keys themselves)."""
    from loyalty.auth.services import list_keys

    for key in list_keys(db.session()):
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        click.echo(f"{key.name}\t{key.prefix}…\t{' '.join(key.scopes)}\t{state}")


@keys_cli.command("revoke")
@click.argument("name")
def keys_revoke(name: str) -> None:
    """Revoke the API key NAME."""
    from loyalty.auth.services import revoke_key

    try:
        revoke_key(db.session(), name)
    except LoyaltyError as error:
        raise click.ClickException(error.detail) from None
    click.echo(f"revoked {name}")
