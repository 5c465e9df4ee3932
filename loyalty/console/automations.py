"""Console pages for automations: the list with how often each fired, the forms for a new
automation and an automation's next version, and an automation's budget and its usage,
versions, latest firings, activation, deactivation and simulator. Every write goes through
the API's schemas and services, under the signed-in key's name (so it is audited as through
the API)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import marshmallow as ma
from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from loyalty.api.errors import flatten_messages, refusal_messages
from loyalty.api.replica import reads_from_replica
from loyalty.automations import report
from loyalty.automations import services as automations
from loyalty.automations.services import AutomationView, Simulation
from loyalty.console import automation_forms, blp, security
from loyalty.console.automation_forms import AutomationForm
from loyalty.console.reports import campaign_page
from loyalty.db import utcnow
from loyalty.errors import LoyaltyError, ValidationFailed
from loyalty.extensions import db
from loyalty.pagination import cursor_to, position_of
from loyalty.program.services import get_settings
from loyalty.rules import services as rules
from loyalty.rules.models import RuleKind
from loyalty.schemas.automations import (
    AutomationInSchema,
    AutomationUpdateSchema,
    SimulateAutomationSchema,
)

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
        currency=get_settings(session).currency,
    ), 422 if errors else 200


@blp.get("/automations/<uuid:automation_id>/report")
@reads_from_replica
def automation_report(automation_id: uuid.UUID) -> tuple[str, int]:
    return campaign_page(
        lambda days: report.automation_report(db.session(), automation_id, days),
        back=url_for("console.automation_page", automation_id=automation_id),
    )


@blp.post("/automations/<uuid:automation_id>/deactivate")
def deactivate_automation(automation_id: uuid.UUID) -> Response:
    automation = automations.deactivate_automation(db.session(), automation_id, security.actor())
    flash(
        gettext(
            "Inactive as of version %(version)s: it fires no more.",
            version=automation.current.version,
        ),
        "ok",
    )
    return redirect(url_for("console.automation_page", automation_id=automation_id))


@blp.post("/automations/<uuid:automation_id>/activate")
def activate_automation(automation_id: uuid.UUID) -> Response:
    try:
        automation = automations.activate_automation(db.session(), automation_id, security.actor())
    except ValidationFailed as error:  # its rule or a segment has gone since
        lines = [f"{name}: {' '.join(m)}" for name, m in refusal_messages(error).items()]
        flash(gettext("Not activated:") + f" {error.detail} {' '.join(lines)}", "error")
    else:
        flash(
            gettext(
                "Active as of version %(version)s: it fires again.",
                version=automation.current.version,
            ),
            "ok",
        )
    return redirect(url_for("console.automation_page", automation_id=automation_id))


def _grant_rules(session: Session, chosen: str | None) -> list[tuple[str, str]]:
    """The grant's rule choices: the active bonus rules, and the one chosen if it is not
    among them any more (saving then says why it cannot be)."""
    found, _ = rules.list_rules(session, active=True, kind=RuleKind.BONUS, limit=200, after=None)
    choices = [("", "(choose a bonus rule)")]
    choices += [(str(rule.public_id), rule.current.name) for rule in found]
    if chosen and chosen not in {value for value, _ in choices}:
        choices.append((chosen, f"{chosen} (not an active bonus rule)"))
    return choices


def _save(
    form: AutomationForm,
    schema: ma.Schema,
    write: Callable[[Any], AutomationView],
    kept: Sequence[Mapping[str, Any]] = (),
) -> tuple[AutomationView | None, dict[str, list[str]]]:
    """Load what the form gathered with the API's `schema` and `write` it through the
    service; returns the automation written, or the errors under the form's field names."""
    draft = form.draft(kept)
    try:
        loaded = schema.load(draft.body)
    except ma.ValidationError as error:
        found = flatten_messages(error.messages)
        for name, messages in draft.problems.items():
            found.setdefault(name, []).extend(messages)
        return None, form.field_errors(found, draft)
    if draft.problems:
        return None, form.field_errors(draft.problems, draft)
    try:
        return write(loaded), {}
    except ValidationFailed as error:
        return None, form.field_errors(refusal_messages(error), draft)


@blp.route("/automations/new", methods=["GET", "POST"])
def automation_new() -> Response | tuple[str, int]:
    session = db.session()
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        form = AutomationForm()
        automation, errors = _save(
            form,
            AutomationInSchema(),
            lambda definition: automations.create_automation(session, definition, security.actor()),
        )
        if automation is not None:
            flash(
                gettext(
                    "Automation %(name)s created (version 1).",
                    name=repr(automation.current.name),
                ),
                "ok",
            )
            return redirect(url_for("console.automation_page", automation_id=automation.public_id))
    else:
        form = AutomationForm(
            formdata=None, data={"kind": "enrolled", "webhook": True, "active": True}
        )
    form.grant_rule_id.choices = _grant_rules(session, form.grant_rule_id.data)
    return render_template(
        "console/automation_form.html",
        form=form,
        errors=errors,
        automation=None,
        kept=[],
        form_actions=automation_forms.FORM_ACTIONS,
    ), 422 if errors else 200


@blp.route("/automations/<uuid:automation_id>/edit", methods=["GET", "POST"])
def automation_edit(automation_id: uuid.UUID) -> Response | tuple[str, int]:
    session = db.session()
    automation = automations.get_automation(session, automation_id)
    kept = automation_forms.kept_actions(automation.current)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        form = AutomationForm()
        changed, errors = _save(
            form,
            # Every field is sent: the form shows the whole version, so an emptied
            # condition is removed and an emptied dedup window cleared.
            AutomationUpdateSchema(partial=True),
            lambda changes: automations.update_automation(
                session, automation_id, changes, security.actor()
            ),
            kept,
        )
        if changed is not None:
            flash(gettext("Saved as version %(version)s.", version=changed.current.version), "ok")
            return redirect(url_for("console.automation_page", automation_id=automation_id))
        # Refused: the form again, over the automation as it still is.
        automation = automations.get_automation(session, automation_id)
    else:
        form = AutomationForm(formdata=None, data=automation_forms.initial(automation.current))
    form.grant_rule_id.choices = _grant_rules(session, form.grant_rule_id.data)
    return render_template(
        "console/automation_form.html",
        form=form,
        errors=errors,
        automation=automation,
        kept=kept,
        form_actions=automation_forms.FORM_ACTIONS,
    ), 422 if errors else 200
