"""Console pages for earning rules: the list, a rule's versions, the forms, the simulator."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from loyalty.api.errors import flatten_messages, refusal_messages
from loyalty.console import blp, security
from loyalty.errors import LoyaltyError
from loyalty.extensions import db
from loyalty.orders import earning
from loyalty.rules import services as rules
from loyalty.rules.services import RuleView
from loyalty.schemas.rules import RuleInSchema, RuleUpdateSchema

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
            definition = RuleInSchema().load(_rule_form_data(request.form))
            rule = rules.create_rule(db.session(), definition, security.actor())
        except ma.ValidationError as error:
            errors = flatten_messages(error.messages)
        except LoyaltyError as error:
            errors = refusal_messages(error)
        else:
            flash(f"Rule {rule.current.name!r} created (version 1).", "ok")
            return redirect(url_for("console.rule_page", rule_id=rule.public_id))
    status = 422 if errors else 200
    return render_template("console/rule_form.html", form=form, errors=errors, rule=None), status


@blp.get("/rules/<uuid:rule_id>")
def rule_page(rule_id: uuid.UUID) -> str:
    history = rules.rule_history(db.session(), rule_id)
    return render_template("console/rule.html", rule=history.rule, versions=history.versions)


@blp.route("/rules/<uuid:rule_id>/edit", methods=["GET", "POST"])
def rule_edit(rule_id: uuid.UUID) -> Response | str | tuple[str, int]:
    session = db.session()
    errors: dict[str, Any] = {}
    if request.method == "POST":
        form: Any = request.form
        try:
            body = _rule_form_data(request.form)
            body.pop("kind", None)
            changes = RuleUpdateSchema(partial=True).load(body)
            rules.update_rule(session, rule_id, changes, security.actor())
        except ma.ValidationError as error:
            errors = flatten_messages(error.messages)
        except LoyaltyError as error:
            errors = refusal_messages(error)
        else:
            flash("Saved as a new version.", "ok")
            return redirect(url_for("console.rule_page", rule_id=rule_id))
        # Refused: the form again, over the rule as it still is.
        rule = rules.get_rule(session, rule_id)
    else:
        rule = rules.get_rule(session, rule_id)
        form = _form_of(rule)
    return render_template(
        "console/rule_form.html", form=form, errors=errors, rule=rule
    ), 422 if errors else 200


def _form_of(rule: RuleView) -> dict[str, Any]:
    """The edit form filled in with the rule's current version."""
    version = rule.current
    return {
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
                    draft = RuleInSchema().load(_rule_form_data(draft_form))
                    drafts.append(draft.as_fields())
                except ma.ValidationError as error:
                    errors.update(
                        {f"draft {k}": v for k, v in flatten_messages(error.messages).items()}
                    )
            if not errors:
                try:
                    result = earning.simulate(
                        db.session(),
                        external_id=request.form.get("member_id", "").strip() or None,
                        lines=lines,
                        discount=0,
                        event_type=None,
                        drafts=drafts,
                        include_active=True,
                    )
                except LoyaltyError as error:
                    errors = refusal_messages(error)
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
