"""Console pages: thin views over the same services the API uses."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import marshmallow as ma
from flask import flash, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from loyalty.api.errors import flatten_messages
from loyalty.api.rules import definition
from loyalty.audit import services as audit
from loyalty.console import blp, charts, security
from loyalty.db import utcnow
from loyalty.errors import LoyaltyError
from loyalty.extensions import db
from loyalty.ledger.queries import member_points_delta
from loyalty.members.models import MemberStatus
from loyalty.membership import adjustments
from loyalty.membership import services as members
from loyalty.membership.services import history
from loyalty.orders import earning
from loyalty.pagination import decode_cursor, encode_cursor
from loyalty.program import services as program
from loyalty.reports import services as reports
from loyalty.rewards import services as rewards
from loyalty.rules import services as rules
from loyalty.schemas.program import ProgramSchema, changes_to_columns, settings_to_dict
from loyalty.schemas.rules import RuleInSchema
from loyalty.tiers import services as tiers
from loyalty.webhooks import services as webhooks

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
    session = db.session()
    card = members.card(session, external_id)
    page = history(session, external_id, 25, request.args.get("cursor") or None)
    return render_template(
        "console/member.html",
        card=card,
        page=page,
        delta=member_points_delta,
        tier_history=tiers.tier_history(session, card.member.id, limit=50, before=None),
        holds=members.holds(session, card.member.id),
        reward_redemptions=rewards.member_redemptions(session, card.member.id),
        statuses=[s.value for s in MemberStatus],
    )


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
    try:
        adjustments.adjust(db.session(), external_id, points, reason[:500], security.actor())
    except LoyaltyError as error:
        flash(error.detail, "error")
    else:
        flash(f"Adjusted by {points:+d} points.", "ok")
    return redirect(url_for("console.member_page", external_id=external_id))


@blp.post("/members/<external_id>/status")
def change_status(external_id: str) -> Response:
    status = request.form.get("status", "")
    if status not in {s.value for s in MemberStatus}:
        flash("Choose active, suspended or closed.", "error")
    else:
        try:
            members.update_member(db.session(), external_id, {"status": status}, security.actor())
        except LoyaltyError as error:
            flash(error.detail, "error")
        else:
            flash(f"Status is now {status}.", "ok")
    return redirect(url_for("console.member_page", external_id=external_id))


RULE_FIELDS = ("name", "kind", "priority", "points", "per_amount", "factor", "event_type")


def _rule_form_data(form: Any) -> dict[str, Any]:
    """The rule form as the API's rule body (empty fields left out)."""
    body: dict[str, Any] = {
        k: form.get(k, "").strip() for k in RULE_FIELDS if form.get(k, "").strip()
    }
    for name in ("priority", "points", "per_amount"):
        if name in body:
            body[name] = int(body[name]) if body[name].lstrip("-").isdigit() else body[name]
    conditions: dict[str, Any] = {}
    for name in ("skus", "categories", "tiers"):
        values = [v.strip() for v in form.get(name, "").split(",") if v.strip()]
        if values:
            conditions[name] = values
    if form.get("min_amount", "").strip():
        raw = form["min_amount"].strip()
        conditions["min_amount"] = int(raw) if raw.isdigit() else raw
    if form.get("first_order"):
        conditions["first_order"] = True
    body["conditions"] = conditions
    if form.get("cap_per_order", "").strip():
        raw = form["cap_per_order"].strip()
        body["caps"] = {"per_order": int(raw) if raw.isdigit() else raw}
    body["active"] = bool(form.get("active"))
    return body


@blp.get("/rules")
def rule_list() -> str:
    found, _ = rules.list_rules(db.session(), active=None, kind=None, limit=200, after=None)
    return render_template("console/rules.html", rules=found)


@blp.route("/rules/new", methods=["GET", "POST"])
def rule_new() -> Response | str | tuple[str, int]:
    errors: dict[str, Any] = {}
    form = (
        request.form
        if request.method == "POST"
        else {"active": "on", "kind": "spend", "priority": "100"}
    )
    if request.method == "POST":
        try:
            loaded = RuleInSchema().load(_rule_form_data(request.form))
            rule = rules.create_rule(db.session(), definition(loaded), security.actor())
        except ma.ValidationError as error:
            errors = flatten_messages(error.messages)
        except LoyaltyError as error:
            errors = flatten_messages(error.extra.get("errors") or {"_schema": [error.detail]})
        else:
            flash(f"Rule {rule.current.name!r} created (version 1).", "ok")
            return redirect(url_for("console.rule_page", rule_id=rule.public_id))
    status = 422 if errors else 200
    return render_template("console/rule_form.html", form=form, errors=errors, rule=None), status


@blp.get("/rules/<uuid:rule_id>")
def rule_page(rule_id: uuid.UUID) -> str:
    session = db.session()
    return render_template(
        "console/rule.html",
        rule=rules.get_rule(session, rule_id),
        versions=rules.list_versions(session, rule_id),
    )


@blp.route("/rules/<uuid:rule_id>/edit", methods=["GET", "POST"])
def rule_edit(rule_id: uuid.UUID) -> Response | str | tuple[str, int]:
    session = db.session()
    rule = rules.get_rule(session, rule_id)
    errors: dict[str, Any] = {}
    if request.method == "POST":
        form: Any = request.form
        try:
            body = _rule_form_data(request.form)
            body.pop("kind", None)
            loaded = RuleInSchema(partial=True).load(body)
            rules.update_rule(session, rule_id, definition(loaded), security.actor())
        except ma.ValidationError as error:
            errors = flatten_messages(error.messages)
        except LoyaltyError as error:
            errors = flatten_messages(error.extra.get("errors") or {"_schema": [error.detail]})
        else:
            flash("Saved as a new version.", "ok")
            return redirect(url_for("console.rule_page", rule_id=rule_id))
    else:
        version = rule.current
        form = {
            "name": version.name,
            "kind": rule.kind,
            "priority": version.priority,
            **{k: v for k, v in version.config.items() if v is not None},
            "skus": ", ".join(version.conditions.get("skus") or []),
            "categories": ", ".join(version.conditions.get("categories") or []),
            "tiers": ", ".join(version.conditions.get("tiers") or []),
            "min_amount": version.conditions.get("min_amount") or "",
            "first_order": version.conditions.get("first_order"),
            "cap_per_order": (version.caps or {}).get("per_order") or "",
            "active": version.active,
        }
    return render_template(
        "console/rule_form.html", form=form, errors=errors, rule=rule
    ), 422 if errors else 200


@blp.route("/rules/simulate", methods=["GET", "POST"])
def simulate() -> str | tuple[str, int]:
    result = None
    errors: dict[str, Any] = {}
    form: Any = request.form if request.method == "POST" else {}
    if request.method == "POST":
        lines, problems = _cart_lines(request.form.get("cart", ""))
        if problems:
            errors["cart"] = problems
        else:
            drafts = []
            if request.form.get("draft_kind"):
                draft_form = {
                    k[len("draft_") :]: v for k, v in request.form.items() if k.startswith("draft_")
                }
                draft_form["active"] = "on"
                try:
                    drafts.append(definition(RuleInSchema().load(_rule_form_data(draft_form))))
                except ma.ValidationError as error:
                    errors.update(
                        {f"draft {k}": v for k, v in flatten_messages(error.messages).items()}
                    )
            if not errors:
                try:
                    result = earning.simulate(
                        db.session(),
                        member_id=request.form.get("member_id", "").strip() or None,
                        lines=lines,
                        discount=0,
                        event_type=None,
                        drafts=drafts,
                        include_active=True,
                    )
                except LoyaltyError as error:
                    errors = flatten_messages(
                        error.extra.get("errors") or {"_schema": [error.detail]}
                    )
    return render_template(
        "console/simulate.html", form=form, result=result, errors=errors
    ), 422 if errors else 200


def _cart_lines(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Cart lines typed one per line as `sku, category, quantity, unit price in cents`."""
    lines, problems = [], []
    for number, raw in enumerate(filter(None, (r.strip() for r in text.splitlines())), start=1):
        parts = [p.strip() for p in raw.split(",")]
        if len(parts) != 4 or not parts[2].isdigit() or not parts[3].isdigit():
            problems.append(f"Line {number}: write sku, category, quantity, unit price in cents.")
            continue
        lines.append(
            {
                "sku": parts[0],
                "category": parts[1] or None,
                "quantity": int(parts[2]),
                "unit_price": int(parts[3]),
            }
        )
    if not lines and not problems:
        problems.append("Add at least one cart line.")
    return lines, problems


@blp.get("/tiers")
def tier_list() -> str:
    session = db.session()
    return render_template(
        "console/tiers.html", tiers=tiers.list_tiers(session), counts=tiers.member_counts(session)
    )


@blp.get("/rewards")
def reward_list() -> str:
    session = db.session()
    found = rewards.list_rewards(session)
    return render_template(
        "console/rewards.html", rewards=found, min_tier=lambda r: rewards.min_tier_code(session, r)
    )


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
            program.update_settings(session, changes_to_columns(loaded), security.actor())
        except ma.ValidationError as error:
            errors = _program_field_errors(flatten_messages(error.messages))
        except LoyaltyError as error:
            errors = _program_field_errors(
                flatten_messages(error.extra.get("errors") or {"_schema": [error.detail]})
            )
        else:
            flash("Program settings saved.", "ok")
            return redirect(url_for("console.program_page"))
    settings = settings_to_dict(program.get_settings(session))
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
    session = db.session()
    endpoint = webhooks.find_endpoint(session, webhook_id)
    found, _ = webhooks.deliveries(session, endpoint, 100, None)
    return render_template(
        "console/webhook.html",
        endpoint=endpoint,
        deliveries=found,
        attempts=webhooks.attempts_of(session, [d.id for d in found]),
        event_of=lambda d: webhooks.event_of(session, d),
    )


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
        before_position=decode_cursor(cursor) if cursor else None,
    )
    return render_template(
        "console/audit.html",
        entries=entries,
        target_type=target_type,
        target_id=target_id,
        next_cursor=encode_cursor(next_position) if next_position else None,
    )
