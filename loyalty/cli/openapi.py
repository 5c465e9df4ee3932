"""`loyalty openapi`: the OpenAPI document."""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup

OPENAPI_FILE = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def openapi_document(app: Flask) -> str:
    """The OpenAPI document as committed in openapi/: stable key order, trailing newline."""
    spec = app.extensions["flask-smorest"]["apis"][""]["ext_obj"].spec.to_dict()
    return json.dumps(spec, indent=2, sort_keys=True) + "\n"


openapi_cli = AppGroup("openapi", help="The OpenAPI document.")


@openapi_cli.command("export")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=OPENAPI_FILE,
    show_default=True,
)
def openapi_export(output: Path) -> None:
    """Write the OpenAPI document generated from the code."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(openapi_document(current_app))
    click.echo(f"wrote {output}")
