"""`loyalty jobs`: background work, one pass or a worker's loop."""

from __future__ import annotations

import datetime as dt
import gc
import sys
import time

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup

from loyalty import metrics
from loyalty.extensions import db

jobs_cli = AppGroup("jobs", help="Background work.")


def _one_pass(batch_size: int, notice_days: int, webhook_budget: float, settle_workers: int) -> str:
    from loyalty.auth import member_tokens
    from loyalty.automations import firing as automations
    from loyalty.conclusions import lifecycle as experiments
    from loyalty.grants import services as bulk_grants
    from loyalty.insight import services as insight
    from loyalty.jobs import services as jobs
    from loyalty.referrals import services as referrals
    from loyalty.webhooks import services as webhooks

    started = time.perf_counter()
    session = db.session()
    if sys.stdout.isatty():
        with click.progressbar(length=jobs.due_count(session), label="settling members") as bar:
            summary = jobs.settle_due(
                session, batch_size=batch_size, progress=bar.update, workers=settle_workers
            )
    else:
        summary = jobs.settle_due(session, batch_size=batch_size, workers=settle_workers)
    notified = jobs.notify_expiring(session, within_days=notice_days)
    birthdays = jobs.grant_birthdays(session)
    referred = referrals.reward_due(session, batch_size=batch_size)
    insight_daily = insight.refresh_if_due(session)
    # Before automations: an experiment past its window exposes no one in this pass.
    ended = experiments.end_due(session)
    flagged = experiments.flag_mismatches(session)
    # After the refresh: automations narrow on its segments and predicted values.
    fired = automations.fire_due(session)
    purged = member_tokens.purge_ended(session)
    # Before dispatch: the points.adjusted events of its grants go out in this pass.
    bulk = bulk_grants.run_due(session, batch_size=batch_size)
    dispatched = webhooks.dispatch(session)
    delivered = webhooks.deliver_due(
        session,
        allow_local=current_app.config["WEBHOOKS_ALLOW_LOCAL"],
        budget_seconds=webhook_budget,
        lease=dt.timedelta(seconds=current_app.config["WEBHOOK_LEASE_SECONDS"]),
    )
    metrics.JOB_PASSES.observe(time.perf_counter() - started)
    return (
        f"settled {summary.members_settled} members ({summary.transactions_written} "
        f"transactions), {notified} expiry notices, {birthdays} birthdays, {referred} "
        f"referrals rewarded, {dispatched} events dispatched, {delivered.succeeded} "
        f"webhooks delivered, {delivered.failed_attempts} "
        f"failed, {fired.total} automations fired, {ended} experiments ended, {flagged} "
        f"experiments flagged, {purged} member tokens purged, {bulk.granted} bulk grants "
        f"({bulk.refused} refused), insight {insight_daily.state}"
    )


@jobs_cli.command("run")
@click.option("--batch-size", default=500, show_default=True)
@click.option(
    "--settle-workers",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Threads settling due members at once, each on its own database connection "
    "(PostgreSQL; one on SQLite).",
)
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
    settle_workers: int,
    notice_days: int,
    loop_seconds: float | None,
    webhook_budget: float,
    metrics_bind: str | None,
) -> None:
    """Settle due members (maturing, expiry, timed-out holds, tier reviews), send expiry
    notices and birthday events, refresh member insight once a day, end the experiments
    whose window passed and flag those whose exposures do not fit their weights, fire the
    automations that are due, purge member tokens ended over a day ago, and deliver
    webhooks.
    Safe to run on several machines."""
    # Everything loaded so far (the app, its modules, the ORM's mappings) lives as long as
    # the worker: taken out of the garbage collector's reach, a full collection no longer
    # walks it, and a settling pass spent a sixth of its time in those collections.
    gc.freeze()
    if metrics_bind:
        host, _, port = metrics_bind.rpartition(":")
        if not port.isdigit():
            raise click.BadParameter("expected HOST:PORT", param_hint="--metrics-bind")
        metrics.serve(host.strip("[]") or "127.0.0.1", int(port))
    while True:
        try:
            click.echo(_one_pass(batch_size, notice_days, webhook_budget, settle_workers))
        except sa.exc.OperationalError as error:
            if loop_seconds is None:
                raise
            # The database went away mid-pass (a restart, a failover, PgBouncer restarting).
            # Every finished batch is committed and the next pass resumes where this one
            # stopped, so a looping worker waits for its next pass instead of dying.
            db.session.remove()
            click.echo(f"pass interrupted, database unavailable: {error.orig!r}", err=True)
        if loop_seconds is None:
            return
        time.sleep(loop_seconds)
