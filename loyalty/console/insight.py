"""Console pages over member insight: the program's segments, RFM grid, predicted value and
model (with its evaluation at a split the admin picks), and the member list with the API's
filters and its CSV export."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

import marshmallow as ma
from babel.numbers import get_currency_precision
from flask import Response, render_template, request, stream_with_context, url_for
from flask_babel import gettext, lazy_gettext
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import UnprocessableEntity

from loyalty import days
from loyalty.api.errors import flatten_messages, refusal_messages
from loyalty.api.replica import reads_from_replica
from loyalty.console import blp, charts, formatting
from loyalty.errors import LoyaltyError
from loyalty.extensions import db
from loyalty.insight import evaluation, export, queries, summary
from loyalty.insight.exceptions import InsightNotRefreshed
from loyalty.insight.segments import SCORES, Segment
from loyalty.members.models import MemberStatus
from loyalty.pagination import cursor_to, position_of
from loyalty.program.services import get_settings
from loyalty.schemas.insight import MemberFilterSchema, MemberListQuerySchema, member_filters
from loyalty.tiers import definitions as tier_definitions

ACCENT, SECOND = "#2f6f4f", "#1f5fa8"
PAGE_SIZE = 50
_S = Segment
# Each segment's name and meaning in the reader's language. The English is that of
# loyalty.insight.segments (the API's and the command line's); a test keeps the two equal.
LABELS = {
    _S.CHAMPIONS: lazy_gettext("Champions"),
    _S.LOYAL: lazy_gettext("Loyal"),
    _S.POTENTIAL_LOYALISTS: lazy_gettext("Potential loyalists"),
    _S.NEW: lazy_gettext("New"),
    _S.PROMISING: lazy_gettext("Promising"),
    _S.NEED_ATTENTION: lazy_gettext("Need attention"),
    _S.ABOUT_TO_SLEEP: lazy_gettext("About to sleep"),
    _S.AT_RISK: lazy_gettext("At risk"),
    _S.CANNOT_LOSE_THEM: lazy_gettext("Cannot lose them"),
    _S.HIBERNATING: lazy_gettext("Hibernating"),
    _S.LOST: lazy_gettext("Lost"),
}
MEANING = {
    _S.CHAMPIONS: lazy_gettext("bought recently, often and the most"),
    _S.LOYAL: lazy_gettext("buy often and spend well; not necessarily the very latest"),
    _S.POTENTIAL_LOYALISTS: lazy_gettext("recent, with a few purchases: could become loyal"),
    _S.NEW: lazy_gettext("bought very recently, once or little"),
    _S.PROMISING: lazy_gettext("bought recently, once or little"),
    _S.NEED_ATTENTION: lazy_gettext("middling on every score: slipping without a nudge"),
    _S.ABOUT_TO_SLEEP: lazy_gettext("not recent, little bought"),
    _S.AT_RISK: lazy_gettext("used to buy a fair amount, but not for a long time"),
    _S.CANNOT_LOSE_THEM: lazy_gettext("among the best buyers once, gone quiet"),
    _S.HIBERNATING: lazy_gettext("long gone quiet, little bought"),
    _S.LOST: lazy_gettext("the longest gone, little bought"),
}
SEGMENT_LABELS = {s.value: label for s, label in LABELS.items()}


@blp.get("/insight")
@reads_from_replica
def insight_page() -> str | tuple[str, int]:
    session = db.session()
    try:
        found = summary.summary(session)
    except InsightNotRefreshed:
        return render_template("console/insight.html", summary=None)
    split = request.args.get("split", "").strip()
    evaluated, refusal = _evaluation(split) if split else (None, None)
    grid = found.rfm_grid
    return render_template(
        "console/insight.html",
        summary=found,
        meaning=MEANING,
        labels=SEGMENT_LABELS,
        members_map=charts.heat_map(
            [(c.recency_score, c.fm_score, str(LABELS[c.segment]), c.members) for c in grid]
        ),
        revenue_map=charts.heat_map(
            [(c.recency_score, c.fm_score, str(LABELS[c.segment]), c.revenue) for c in grid]
        ),
        value_chart=charts.bar_chart(
            [(str(d.decile), [d.total]) for d in found.predicted_value],
            [(gettext("predicted value"), ACCENT)],
        ),
        split=split,
        default_split=days.today(
            found.refresh.as_of - dt.timedelta(days=182), formatting.zone()
        ).isoformat(),
        evaluation=evaluated,
        evaluation_chart=None
        if evaluated is None
        else charts.bar_chart(
            [(b.frequency, [b.predicted, b.actual]) for b in evaluated.by_frequency],
            [(gettext("predicted"), ACCENT), (gettext("actual"), SECOND)],
        ),
        refusal=refusal,
    ), 422 if refusal else 200


def _evaluation(split: str) -> tuple[evaluation.ModelEvaluation | None, str | None]:
    """The model's evaluation at the start of the day `split` (YYYY-MM-DD) in the program's
    time zone, or why there is none."""
    try:
        day = dt.date.fromisoformat(split)
    except ValueError:
        return None, gettext("Split: %(split)s is not a date (YYYY-MM-DD).", split=repr(split))
    moment = days.start_of(day, formatting.zone())
    try:
        return evaluation.evaluate_at(db.session(), moment), None
    except LoyaltyError as error:
        lines = [" ".join(messages) for messages in refusal_messages(error).values()]
        return None, " ".join(lines) or str(error)


MONEY_FILTERS = ("predicted_value_min", "predicted_value_max")


def _filter_query(
    args: MultiDict[str, str], schema: ma.Schema, currency: str
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The member list's query string as the API's filters: blank fields are no filter, the
    segment may repeat, and predicted values are read in the program's currency (250.50)
    rather than the API's minor units. Returns the loaded filters, or the errors by field."""
    given: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for key in args:
        values = [v.strip() for v in args.getlist(key) if v.strip()]
        if not values:
            continue
        given[key] = values if key == "segment" else values[-1]
        if key in MONEY_FILTERS:
            try:
                given[key] = _minor_units(given[key], currency)
            except ValueError:
                errors[key] = [
                    gettext("An amount in %(currency)s, such as 250 or 249.99.", currency=currency)
                ]
    try:
        loaded = schema.load(given)
    except ma.ValidationError as error:
        return {}, {**flatten_messages(error.messages), **errors}
    return (loaded, {}) if not errors else ({}, errors)


def _minor_units(text: str, currency: str) -> int:
    """'249.99' USD as 24999. Raises ValueError for what is not an amount in the currency."""
    try:
        minor = Decimal(text).scaleb(get_currency_precision(currency))
    except InvalidOperation:
        raise ValueError(text) from None
    if not minor.is_finite() or minor != minor.to_integral_value():
        raise ValueError(text)
    return int(minor)


def _query_string(args: MultiDict[str, str]) -> str:
    """The filters given (not the cursor), for the next page's and the export's links."""
    return urlencode([(k, v) for k, v in args.items(multi=True) if k != "cursor" and v.strip()])


@blp.get("/members")
@reads_from_replica
def member_search() -> str | tuple[str, int]:
    session = db.session()
    currency = get_settings(session).currency
    query, errors = _filter_query(request.args, MemberListQuerySchema(), currency)
    rows: list[queries.MemberRow] = []
    next_cursor = None
    if not errors:
        try:
            rows, next_position = queries.list_members(
                session,
                member_filters(query),
                min(query["limit"], PAGE_SIZE),
                position_of(query["cursor"]),
            )
        except LoyaltyError as error:
            errors = refusal_messages(error)
        else:
            next_cursor = cursor_to(next_position)
    filters = _query_string(request.args)
    return render_template(
        "console/members.html",
        args=request.args,
        rows=rows,
        next_url=next_cursor
        and f"{url_for('console.member_search', cursor=next_cursor)}&{filters}".rstrip("&"),
        export_url=f"{url_for('console.member_export')}?{filters}".rstrip("?"),
        errors=errors,
        currency=currency,
        segments=[(s.value, LABELS[s]) for s in Segment],
        labels=SEGMENT_LABELS,
        statuses=[s.value for s in MemberStatus],
        tiers=tier_definitions.list_tiers(session),
        scores=SCORES,
    ), 422 if errors else 200


@blp.get("/members.csv")
@reads_from_replica
def member_export() -> Response:
    currency = get_settings(db.session()).currency
    query, errors = _filter_query(request.args, MemberFilterSchema(), currency)
    if errors:
        lines = [f"{name}: {' '.join(messages)}" for name, messages in errors.items()]
        raise UnprocessableEntity("; ".join(lines))
    rows = queries.iter_members(db.session(), member_filters(query))
    return Response(
        stream_with_context(export.csv_lines(rows)),
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="members.csv"'},
    )


def member_insight(external_id: str) -> tuple[queries.MemberInsightView | None, str | None]:
    """The member's insight for their page, or why there is none yet."""
    try:
        return queries.member_insight(db.session(), external_id), None
    except InsightNotRefreshed:
        return None, gettext("No insight refresh has run yet.")
