"""The console's page of a campaign's return (an earning rule's or an automation's)."""

from __future__ import annotations

from collections.abc import Callable

import marshmallow as ma
from flask import render_template, request

from loyalty.api.errors import flatten_messages
from loyalty.reports.campaigns import DEFAULT_WINDOW_DAYS, CampaignReport
from loyalty.schemas.reports import CampaignReportQuerySchema


def campaign_page(build: Callable[[int], CampaignReport], *, back: str) -> tuple[str, int]:
    """The report `build` makes for the window the query string asks (the API's bounds; a
    bad one is said by the field, over the default window's report, with a 422)."""
    text = request.args.get("window_days", "").strip()
    errors: dict[str, list[str]] = {}
    days = DEFAULT_WINDOW_DAYS
    if text:
        try:
            days = CampaignReportQuerySchema().load({"window_days": text})["window_days"]
        except ma.ValidationError as error:
            errors = flatten_messages(error.messages)
    found = build(days)
    return render_template(
        "console/campaign_report.html",
        report=found,
        back=back,
        window_text=text or str(days),
        errors=errors,
    ), 422 if errors else 200
