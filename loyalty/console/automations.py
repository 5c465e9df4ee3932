"""Console pages for automations: the list with how often each fired, and an automation's
versions, latest firings, deactivation and simulator."""

from __future__ import annotations

import datetime as dt
import uuid

import marshmallow as ma
from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from loyalty.api.errors import flatten_messages
from loyalty.automations import report
from loyalty.automations import services as automations
from loyalty.automations.services import Simulation
from loyalty.console import blp, security
from loyalty.console.reports import campaign_page
from loyalty.db import utcnow
from loyalty.errors import LoyaltyError
from loyalty.extensions import db
from loyalty.pagination import cursor_to, position_of
from loyalty.schemas.automations import SimulateAutomationSchema

RECENT = dt.timedelta(days=7)
FIRINGS_PER_PAGE = 50


@blp.get("/automations")
def automation_list() -> str:
    session = db.session()
    found, _ = automations.list_automations(session, active=None, limit=200, after=None)
    counts = automations.firing_counts(
        session, [automation.public_id for automation in found], utcnow() - RECENT
    )
    return render_template("console/automations.html", automations=found, counts=counts)


@blp.get("/automations/<uuid:automation_id>")
def automation_page(automation_id: uuid.UUID) -> tuple[str, int]:
    session = db.session()
    automation = automations.get_automation(session, automation_id)
    versions = automations.list_versions(session, automation_id)
    cursor = request.args.get("cursor")
    firings, next_position = automations.recent_firings(
        session, automation_id, limit=FIRINGS_PER_PAGE, before=position_of(cursor)
    )
    counts = automations.firing_counts(session, [automation_id], utcnow() - RECENT)
    # The simulator is a GET form: asking writes nothing, and the answer can be linked to.
    member_id = request.args.get("member_id")
    simulation: Simulation | None = None
    errors: dict[str, list[str]] = {}
    if member_id is not None:
        try:
            body = SimulateAutomationSchema().load({"member_id": member_id.strip()})
            simulation = automations.simulate(session, automation_id, body["member_id"])
        except ma.ValidationError as error:
            errors = flatten_messages(error.messages)
        except LoyaltyError as error:  # no such member: said by the field
            errors = {"member_id": [error.detail]}
    return render_template(
        "console/automation.html",
        automation=automation,
        versions=versions,
        firings=firings,
        counts=counts[automation_id],
        cursor=cursor,
        next_cursor=cursor_to(next_position),
        member_id=member_id or "",
        simulation=simulation,
        errors=errors,
    ), 422 if errors else 200


@blp.get("/automations/<uuid:automation_id>/report")
def automation_report(automation_id: uuid.UUID) -> tuple[str, int]:
    return campaign_page(
        lambda days: report.automation_report(db.session(), automation_id, days),
        back=url_for("console.automation_page", automation_id=automation_id),
    )


@blp.post("/automations/<uuid:automation_id>/deactivate")
def deactivate_automation(automation_id: uuid.UUID) -> Response:
    automation = automations.deactivate_automation(db.session(), automation_id, security.actor())
    flash(f"Inactive as of version {automation.current.version}: it fires no more.", "ok")
    return redirect(url_for("console.automation_page", automation_id=automation_id))
