"""Console pages: thin views over the same services the API uses."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import marshmallow as ma
from flask import flash, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from loyalty.api.errors import flatten_messages, refusal_messages
from loyalty.audit import services as audit
from loyalty.console import blp, charts, security
from loyalty.db import utcnow
from loyalty.errors import LoyaltyError
from loyalty.extensions import db
from loyalty.members.models import MemberStatus
from loyalty.membership import adjustments, overview
from loyalty.membership import services as members
from loyalty.pagination import cursor_to, position_of
from loyalty.program import services as program
from loyalty.reports import services as reports
from loyalty.rewards import definitions as reward_definitions
from loyalty.schemas.program import ProgramSchema, settings_changes, settings_to_dict
from loyalty.tiers import definitions as tier_definitions
from loyalty.webhooks import endpoints as webhooks

blp.before_request(security.guard)
blp.context_processor(security.template_globals)


@blp.errorhandler(HTTPException)
def http_error(error: HTTPException) -> tuple[str, int]:
    return render_template("console/error.html", error=error), error.code or 500


@blp.errorhandler(LoyaltyError)
def domain_error(error: LoyaltyError) -> tuple[str, int]:
    return render_template("console/error.html", error=error), error.status


@blp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    if request.method == "POST":
        caller = security.sign_in(request.form.get("api_key", ""))
        if caller is None:
            return render_template("console/login.html", failed=True), 401
        target = request.args.get("next", "")
        # Only our own pages: never an open redirect.
        if not target.startswith("/admin") or target.startswith("//"):
            target = url_for("console.dashboard")
        return redirect(target)
    return render_template("console/login.html", failed=False)


@blp.post("/logout")
def logout() -> Response:
    security.sign_out()
    return redirect(url_for("console.login"))


@blp.get("/")
def dashboard() -> str:
    session = db.session()
    today = utcnow().date()
    activity = reports.activity(session, today - dt.timedelta(days=89), today)
    return render_template(
        "console/dashboard.html",
        liability=reports.liability(session),
        activity=activity,
        chart=charts.activity_chart(activity.days),
    )


@blp.get("/members")
def member_search() -> str:
    query = request.args.get("q", "").strip()
    found = members.search(db.session(), query) if query else []
    return render_template("console/members.html", query=query, found=found)


@blp.get("/members/<external_id>")
def member_page(external_id: str) -> str:
    found = overview.overview(db.session(), external_id, request.args.get("cursor") or None)
    return render_template(
        "console/member.html", member=found, statuses=[s.value for s in MemberStatus]
    )


def _flash_outcome(write: Callable[[], object], done: str) -> None:
    """Run a write for a member's page and flash how it went: `done`, or the refusal."""
    try:
        write()
    except LoyaltyError as error:
        flash(error.detail, "error")
    else:
        flash(done, "ok")


@blp.post("/members/<external_id>/adjust")
def adjust(external_id: str) -> Response | tuple[str, int]:
    try:
        points = int(request.form.get("points", ""))
    except ValueError:
        flash("Points must be a whole number, positive to add or negative to remove.", "error")
        return redirect(url_for("console.member_page", external_id=external_id))
    reason = request.form.get("reason", "").strip()
    if not reason:
        flash("Give a reason: it is kept with the adjustment.", "error")
        return redirect(url_for("console.member_page", external_id=external_id))
    _flash_outcome(
        lambda: adjustments.adjust(
            db.session(), external_id, points, reason[:500], security.actor()
        ),
        f"Adjusted by {points:+d} points.",
    )
    return redirect(url_for("console.member_page", external_id=external_id))


@blp.post("/members/<external_id>/status")
def change_status(external_id: str) -> Response:
    status = request.form.get("status", "")
    if status not in {s.value for s in MemberStatus}:
        flash("Choose active, suspended or closed.", "error")
    else:
        changes = members.MemberChanges(status=MemberStatus(status))
        _flash_outcome(
            lambda: members.update_member(db.session(), external_id, changes, security.actor()),
            f"Status is now {status}.",
        )
    return redirect(url_for("console.member_page", external_id=external_id))


@blp.get("/tiers")
def tier_list() -> str:
    return render_template("console/tiers.html", tiers=tier_definitions.list_tiers(db.session()))


@blp.get("/rewards")
def reward_list() -> str:
    found = reward_definitions.list_rewards(db.session())
    return render_template("console/rewards.html", rewards=found)


@blp.route("/program", methods=["GET", "POST"])
def program_page() -> Response | str | tuple[str, int]:
    session = db.session()
    errors: dict[str, Any] = {}
    if request.method == "POST":
        form = request.form
        body: dict[str, Any] = {
            "currency": form.get("currency", "").strip(),
            "point_value": {
                "points": _int(form.get("point_value_points")),
                "amount": _int(form.get("point_value_amount")),
            },
            "pending_days": _int(form.get("pending_days")),
            "expiry": {
                "policy": form.get("expiry_policy", ""),
                "months": _int(form.get("expiry_months")) if form.get("expiry_months") else None,
            },
            "hold_ttl_seconds": _int(form.get("hold_ttl_seconds")),
            "max_redemption_percent": _int(form.get("max_redemption_percent")),
            "min_redemption_points": _int(form.get("min_redemption_points")),
            "tier_window_months": _int(form.get("tier_window_months")),
        }
        try:
            loaded = ProgramSchema().load(body)
            program.update_settings(session, settings_changes(loaded), security.actor())
        except ma.ValidationError as error:
            errors = _program_field_errors(flatten_messages(error.messages))
        except LoyaltyError as error:
            errors = _program_field_errors(refusal_messages(error))
        else:
            flash("Program settings saved.", "ok")
            return redirect(url_for("console.program_page"))
    settings = settings_to_dict(program.settings_view(session))
    return render_template(
        "console/program.html", settings=settings, errors=errors
    ), 422 if errors else 200


def _program_field_errors(errors: dict[str, list[str]]) -> dict[str, list[str]]:
    """The API's field names (point_value.points) as the form's (point_value_points)."""
    renamed = {
        "expiry": "expiry_months",
        "expiry.months": "expiry_months",
        "expiry.policy": "expiry_policy",
    }
    return {renamed.get(k, k.replace(".", "_")): v for k, v in errors.items()}


def _int(raw: str | None) -> Any:
    raw = (raw or "").strip()
    return int(raw) if raw.lstrip("-").isdigit() else raw


@blp.get("/webhooks")
def webhook_list() -> str:
    return render_template("console/webhooks.html", endpoints=webhooks.list_endpoints(db.session()))


@blp.get("/webhooks/<uuid:webhook_id>")
def webhook_page(webhook_id: uuid.UUID) -> str:
    log = webhooks.delivery_log(db.session(), webhook_id, 100, None)
    return render_template("console/webhook.html", endpoint=log.endpoint, deliveries=log.deliveries)


@blp.post("/webhooks/<uuid:webhook_id>/deliveries/<uuid:delivery_id>/redeliver")
def redeliver(webhook_id: uuid.UUID, delivery_id: uuid.UUID) -> Response:
    webhooks.redeliver(db.session(), webhook_id, delivery_id, security.actor())
    flash("Queued to be sent again by the worker.", "ok")
    return redirect(url_for("console.webhook_page", webhook_id=webhook_id))


@blp.get("/audit")
def audit_log() -> str:
    target_type = request.args.get("target_type") or None
    target_id = request.args.get("target_id") or None
    cursor = request.args.get("cursor")
    entries, next_position = audit.entries(
        db.session(),
        target_type=target_type,
        target_id=target_id,
        since=None,
        until=None,
        limit=50,
        before_position=position_of(cursor),
    )
    return render_template(
        "console/audit.html",
        entries=entries,
        target_type=target_type,
        target_id=target_id,
        next_cursor=cursor_to(next_position),
    )
