"""`loyalty insight`: member insight's refresh."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click
from flask.cli import AppGroup

from loyalty.extensions import db

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
