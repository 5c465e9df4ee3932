"""`loyalty import`: bulk import from another loyalty system (members, balances,
orders), from CSV."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from flask.cli import AppGroup
from sqlalchemy.exc import DBAPIError

from loyalty.extensions import db

import_cli = AppGroup("import", help="Bulk import from another loyalty system.")


def _run_import(kind: str, path: Path, report: Path | None, **options: Any) -> None:
    from loyalty.imports import orders, rows
    from loyalty.imports import services as imports

    runners: dict[str, Callable[..., rows.ImportResult]] = {
        "members": imports.import_members,
        "balances": imports.import_balances,
        "orders": orders.import_orders,
    }
    run = functools.partial(runners[kind], **options)
    with path.open(newline="", encoding="utf-8-sig") as stream:
        try:
            total = max(sum(1 for _ in stream) - 1, 0)
        except UnicodeDecodeError:
            raise click.ClickException(f"{path} is not UTF-8 text; nothing imported") from None
        stream.seek(0)
        try:
            if sys.stdout.isatty():
                with click.progressbar(length=total, label=f"importing {kind}") as bar:
                    result = run(
                        db.session(), stream, all_or_nothing=report is None, progress=bar.update
                    )
            else:
                result = run(db.session(), stream, all_or_nothing=report is None)
        except DBAPIError as error:
            # The database went away (a restart, a lost connection): the transaction is gone
            # with it, so nothing was imported; a traceback would tell the user nothing more.
            message = f"database error: {error.orig}".strip()
            raise click.ClickException(f"{message}; nothing imported") from None
        except rows.ImportRejected as error:
            for item in error.rejected[:20]:
                click.echo(f"line {item.line}: {item.reason}", err=True)
            if error.whole_file:
                message = f"{path} is not CSV it can read; nothing imported"
                raise click.ClickException(message) from None
            raise click.ClickException(
                f"{len(error.rejected)} rows rejected; nothing imported "
                "(fix them, or pass --report FILE to import the valid rows)"
            ) from None
    if report is not None:
        with report.open("w", newline="", encoding="utf-8") as out:
            rows.write_report(result.rejected, out)
    click.echo(
        f"imported {result.imported} {kind}, skipped {result.skipped} (already there"
        + (" or zero points)" if kind == "balances" else ")")
        + ", "
        f"rejected {len(result.rejected)}" + (f" (see {report})" if report else "")
    )


REPORT_OPTION = click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Import the valid rows and write the rejected ones here (default: all or nothing).",
)


@import_cli.command("members")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@REPORT_OPTION
def import_members(path: Path, report: Path | None) -> None:
    """Import members from CSV: external_id[,email,name,birthday,status,marketing_email,
    marketing_sms] (consent: true, false or empty)."""
    _run_import("members", path, report)


@import_cli.command("balances")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@REPORT_OPTION
def import_balances(path: Path, report: Path | None) -> None:
    """Import opening balances from CSV: external_id,points[,expires_at]."""
    _run_import("balances", path, report)


@import_cli.command("orders")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@REPORT_OPTION
@click.option(
    "--earn",
    is_flag=True,
    help="Earn points as API orders placed then would, row by row (slow for millions); "
    "default: history only, no points.",
)
def import_orders(path: Path, report: Path | None, earn: bool) -> None:
    """Import past orders from CSV: external_id,order_id,placed_at,amount,currency."""
    _run_import("orders", path, report, earn=earn)
