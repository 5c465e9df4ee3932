"""The `loyalty` command: a Flask CLI group over the app factory."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup, FlaskGroup
from sqlalchemy.exc import DBAPIError

from loyalty import metrics
from loyalty.auth.models import Scope
from loyalty.errors import LoyaltyError
from loyalty.extensions import db

# Its tables are part of the schema the migrations build (and are checked against).
from loyalty.insight import models as _insight_models  # noqa: F401
from loyalty.members import segments as _segment_models  # noqa: F401

OPENAPI_FILE = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


def openapi_document(app: Flask) -> str:
    """The OpenAPI document as committed in openapi/: stable key order, trailing newline."""
    spec = app.extensions["flask-smorest"]["apis"][""]["ext_obj"].spec.to_dict()
    return json.dumps(spec, indent=2, sort_keys=True) + "\n"


def gunicorn_args(host: str | None, port: int | None, workers: int | None) -> list[str]:
    """gunicorn's command line for `loyalty serve`. Without --host and --port the bind comes
    from gunicorn.conf.py, that is from LOYALTY_BIND (default 127.0.0.1:8000)."""
    conf = Path(__file__).resolve().parent.parent / "gunicorn.conf.py"
    args = [sys.executable, "-m", "gunicorn"]
    if conf.exists():
        args += ["--config", str(conf)]
    if host is not None or port is not None:
        default_host, _, default_port = os.environ.get("LOYALTY_BIND", "127.0.0.1:8000").rpartition(
            ":"
        )
        args += ["--bind", f"{host or default_host}:{port or default_port}"]
    if workers:
        args += ["--workers", str(workers)]
    return [*args, "loyalty:create_app()"]


@click.command("serve")
@click.option("--host", default=None, help="Default: from LOYALTY_BIND, else 127.0.0.1.")
@click.option("--port", default=None, type=int, help="Default: from LOYALTY_BIND, else 8000.")
@click.option("--workers", default=None, type=int, help="Default: from gunicorn.conf.py.")
def serve_command(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the API with gunicorn (sync workers)."""
    args = gunicorn_args(host, port, workers)
    os.execv(sys.executable, args)  # noqa: S606 - replaces this process with gunicorn


db_cli = AppGroup("db", help="Database schema.")


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database to REVISION (default: head)."""
    from loyalty.migrate import upgrade

    upgrade(db.engine, revision)
    click.echo(f"database at {revision}")


keys_cli = AppGroup("keys", help="API keys.")


@keys_cli.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice([scope.value for scope in Scope]),
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


demo_cli = AppGroup("demo", help="Demo data.")


@demo_cli.command("seed")
def demo_seed() -> None:
    """Seed demo members and print one fresh API key per scope."""
    from loyalty.demo import seed

    for line in seed(db.session()):
        click.echo(line)


jobs_cli = AppGroup("jobs", help="Background work.")


def _one_pass(batch_size: int, notice_days: int, webhook_budget: float) -> str:
    from loyalty.insight import services as insight
    from loyalty.jobs import services as jobs
    from loyalty.webhooks import services as webhooks

    started = time.perf_counter()
    session = db.session()
    if sys.stdout.isatty():
        with click.progressbar(length=jobs.due_count(session), label="settling members") as bar:
            summary = jobs.settle_due(session, batch_size=batch_size, progress=bar.update)
    else:
        summary = jobs.settle_due(session, batch_size=batch_size)
    notified = jobs.notify_expiring(session, within_days=notice_days)
    birthdays = jobs.grant_birthdays(session)
    insight_daily = insight.refresh_if_due(session)
    dispatched = webhooks.dispatch(session)
    delivered = webhooks.deliver_due(
        session,
        allow_local=current_app.config["WEBHOOKS_ALLOW_LOCAL"],
        budget_seconds=webhook_budget,
    )
    metrics.JOB_PASSES.observe(time.perf_counter() - started)
    return (
        f"settled {summary.members_settled} members ({summary.transactions_written} "
        f"transactions), {notified} expiry notices, {birthdays} birthdays, {dispatched} events "
        f"dispatched, {delivered.succeeded} webhooks delivered, {delivered.failed_attempts} "
        f"failed, insight {insight_daily.state}"
    )


@jobs_cli.command("run")
@click.option("--batch-size", default=500, show_default=True)
@click.option(
    "--notice-days",
    default=14,
    show_default=True,
    help="Tell members about points expiring within this many days.",
)
@click.option(
    "--loop",
    "loop_seconds",
    type=float,
    default=None,
    help="Keep running as a worker, starting a new pass every SECONDS.",
)
@click.option(
    "--webhook-budget",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Deliver due webhooks for at most this many seconds per pass (the rest wait for "
    "the next pass).",
)
@click.option(
    "--metrics-bind",
    envvar="LOYALTY_JOBS_METRICS_BIND",
    metavar="HOST:PORT",
    default=None,
    help="Serve this worker's Prometheus metrics at http://HOST:PORT/metrics "
    "(or set LOYALTY_JOBS_METRICS_BIND).",
)
def jobs_run(
    batch_size: int,
    notice_days: int,
    loop_seconds: float | None,
    webhook_budget: float,
    metrics_bind: str | None,
) -> None:
    """Settle due members (maturing, expiry, timed-out holds, tier reviews), send expiry
    notices and birthday events, refresh member insight once a day, and deliver webhooks.
    Safe to run on several machines."""
    if metrics_bind:
        host, _, port = metrics_bind.rpartition(":")
        if not port.isdigit():
            raise click.BadParameter("expected HOST:PORT", param_hint="--metrics-bind")
        metrics.serve(host.strip("[]") or "127.0.0.1", int(port))
    while True:
        click.echo(_one_pass(batch_size, notice_days, webhook_budget))
        if loop_seconds is None:
            return
        time.sleep(loop_seconds)


insight_cli = AppGroup("insight", help="Member insight: figures, RFM segments, lifetime value.")


def _moment(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise click.BadParameter("give the UTC offset too, e.g. 2026-11-30T00:00:00Z")
    return moment.astimezone(dt.UTC)


@insight_cli.command("refresh")
@click.option(
    "--as-of",
    callback=_moment,
    metavar="TIME",
    help="The moment the figures describe, RFC 3339 with an offset (default: now).",
)
def insight_refresh(as_of: dt.datetime | None) -> None:
    """Recompute every member's figures, RFM scores and segment, and lifetime-value inputs
    (and the lifetime-value model's predictions) into the insight tables, in one transaction."""
    from loyalty.insight import services as insight
    from loyalty.insight.segments import LABELS

    session = db.session()
    with click.progressbar(
        length=len(insight.STEPS), label="refreshing insight", show_pos=True
    ) as bar:
        summary = insight.refresh(session, as_of=as_of, progress=lambda _step: bar.update(1))
    click.echo(
        f"insight as of {summary.as_of.isoformat()}: {summary.members} members, "
        f"{summary.buyers} buyers, in {summary.seconds:.1f}s ("
        + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in summary.steps.items())
        + ")"
    )
    for segment, count in sorted(summary.segments.items(), key=lambda item: -item[1]):
        click.echo(f"  {LABELS[segment]}: {count}")
    click.echo(
        f"lifetime-value model: {summary.model_status.value}"
        + (f" ({summary.model_detail})" if summary.model_detail else "")
    )


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
    """Import members from CSV: external_id[,email,name,birthday,status]."""
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
