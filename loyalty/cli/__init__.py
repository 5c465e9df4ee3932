"""The `loyalty` command: a Flask CLI group over the app factory, one module per group of
commands."""

from __future__ import annotations

from typing import Any

import click
from flask import Flask
from flask.cli import FlaskGroup

from loyalty.cli.db import db_cli
from loyalty.cli.demo import demo_cli
from loyalty.cli.imports import import_cli
from loyalty.cli.insight import insight_cli
from loyalty.cli.jobs import jobs_cli
from loyalty.cli.keys import keys_cli
from loyalty.cli.ledger import ledger_cli
from loyalty.cli.openapi import openapi_cli
from loyalty.cli.serve import serve_command

# Its tables are part of the schema the migrations build (and are checked against).
from loyalty.insight import models as _insight_models  # noqa: F401
from loyalty.members import segments as _segment_models  # noqa: F401


def register_commands(app: Flask) -> None:
    groups = (
        db_cli,
        keys_cli,
        ledger_cli,
        demo_cli,
        jobs_cli,
        insight_cli,
        import_cli,
        openapi_cli,
    )
    for group in groups:
        app.cli.add_command(group)
    app.cli.add_command(serve_command)


def _create_app(*_: Any) -> Flask:
    from loyalty import create_app

    return create_app()


@click.group(
    cls=FlaskGroup,
    create_app=_create_app,
    add_default_commands=False,
    add_version_option=False,
    load_dotenv=False,
)
def main() -> None:
    """loyalty: membership and loyalty points service."""


# FlaskGroup adds --app, --env-file and --debug, which choose and configure the app: loyalty's
# app is fixed (create_app, configured by the environment: see the README's Configuration),
# so they would only be noise in `loyalty --help`, or a way to serve with the debugger.
main.params = [param for param in main.params if param.name not in {"app", "env_file", "debug"}]
