"""Console pages for earning rules: the list, a rule's versions, the forms, the simulator."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext
from werkzeug.wrappers import Response
from wtforms import Form

from loyalty.api.errors import flatten_messages, refusal_messages
from loyalty.api.replica import reads_from_replica
from loyalty.console import blp, forms, security
from loyalty.console.reports import campaign_page
from loyalty.errors import LoyaltyError
from loyalty.extensions import db
from loyalty.orders import earning
from loyalty.reports import campaigns
from loyalty.rules import services as rules
from loyalty.rules.services import RuleView
from loyalty.schemas.orders import LineSchema
from loyalty.schemas.rules import RuleInSchema, RuleUpdateSchema


def _rule_field_errors(errors: dict[str, list[str]], form: Form) -> dict[str, list[str]]:
    """The API's rule errors under the form's field names (conditions.skus.0: skus;
    caps.per_order: cap_per_order); those of no field in `form` go to the form's top."""
    named: dict[str, list[str]] = {}
    for key, messages in errors.items():
        parts = key.split(".")
        if parts[0] == "conditions" and len(parts) > 1:
            name = parts[1]
        elif parts[:2] == ["caps", "per_order"]:
            name = "cap_per_order"
        elif parts[0] == "budget":
            name = {"points": "budget_points", "amount": "budget_amount"}.get(
                parts[-1], "budget_period"
            )
        else:
            name = parts[0]
        if name in form:
            named.setdefault(form[name].name, []).extend(messages)
        else:
            named.setdefault("_schema", []).extend(
                messages if name == "_schema" else [f"{key}: {m}" for m in messages]
            )
    return named


@blp.get("/rules")
def rule_list() -> str:
    found, _ = rules.list_rules(db.session(), active=None, kind=None, limit=200, after=None)
    return render_template("console/rules.html", rules=found)


@blp.route("/rules/new", methods=["GET", "POST"])
def rule_new() -> Response | str | tuple[str, int]:
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        form = forms.RuleForm()
        if not form.validate():
            errors = forms.form_errors(form)
        else:
            try:
                definition = RuleInSchema().load(form.body())
                rule = rules.create_rule(db.session(), definition, security.actor())
            except ma.ValidationError as error:
                errors = _rule_field_errors(flatten_messages(error.messages), form)
            except LoyaltyError as error:
                errors = _rule_field_errors(refusal_messages(error), form)
            else:
                flash(
                    gettext("Rule %(name)s created (version 1).", name=repr(rule.current.name)),
                    "ok",
                )
                return redirect(url_for("console.rule_page", rule_id=rule.public_id))
    else:
        form = forms.RuleForm(
            formdata=None, data={"active": True, "kind": "spend", "priority": 100}
        )
    status = 422 if errors else 200
    return render_template("console/rule_form.html", form=form, errors=errors, rule=None), status


@blp.get("/rules/<uuid:rule_id>")
def rule_page(rule_id: uuid.UUID) -> str:
    history = rules.rule_history(db.session(), rule_id)
    return render_template("console/rule.html", rule=history.rule, versions=history.versions)


@blp.get("/rules/<uuid:rule_id>/report")
@reads_from_replica
def rule_report(rule_id: uuid.UUID) -> tuple[str, int]:
    return campaign_page(
        lambda days: campaigns.rule_report(db.session(), rule_id, days),
        back=url_for("console.rule_page", rule_id=rule_id),
    )


@blp.route("/rules/<uuid:rule_id>/edit", methods=["GET", "POST"])
def rule_edit(rule_id: uuid.UUID) -> Response | str | tuple[str, int]:
    session = db.session()
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        form = forms.RuleEditForm()
        if not form.validate():
            errors = forms.form_errors(form)
        else:
            try:
                changes = RuleUpdateSchema(partial=True).load(form.body())
                rules.update_rule(session, rule_id, changes, security.actor())
            except ma.ValidationError as error:
                errors = _rule_field_errors(flatten_messages(error.messages), form)
            except LoyaltyError as error:
                errors = _rule_field_errors(refusal_messages(error), form)
            else:
                flash(gettext("Saved as a new version."), "ok")
                return redirect(url_for("console.rule_page", rule_id=rule_id))
        # Refused: the form again, over the rule as it still is.
        rule = rules.get_rule(session, rule_id)
    else:
        rule = rules.get_rule(session, rule_id)
        form = forms.RuleEditForm(formdata=None, data=_form_of(rule))
    return render_template(
        "console/rule_form.html", form=form, errors=errors, rule=rule
    ), 422 if errors else 200


def _form_of(rule: RuleView) -> dict[str, Any]:
    """The edit form's values: the rule's current version."""
    version = rule.current
    return {
        "name": version.name,
        "priority": version.priority,
        **{k: v for k, v in version.config.items() if v is not None},
        "skus": ", ".join(version.conditions.get("skus") or []),
        "categories": ", ".join(version.conditions.get("categories") or []),
        "tiers": ", ".join(version.conditions.get("tiers") or []),
        "min_amount": version.conditions.get("min_amount"),
        "first_order": bool(version.conditions.get("first_order")),
        "cap_per_order": (version.caps or {}).get("per_order"),
        "budget_period": (version.budget or {}).get("period", ""),
        "budget_points": (version.budget or {}).get("points"),
        "budget_amount": (version.budget or {}).get("amount"),
        "active": version.active,
    }


@blp.route("/rules/simulate", methods=["GET", "POST"])
def simulate() -> str | tuple[str, int]:
    result = None
    errors: dict[str, list[str]] = {}
    posted = request.method == "POST"
    form = forms.SimulateForm() if posted else forms.SimulateForm(formdata=None)
    # The draft rule is optional: it counts once it has a name.
    draft = forms.RuleFields(request.form if posted else None, prefix="draft_")
    if posted:
        drafting = bool(draft.name.data)
        form_ok = form.validate()
        draft_ok = draft.validate() if drafting else True
        errors = forms.form_errors(form) if not form_ok else {}
        if not draft_ok:
            errors.update(forms.form_errors(draft))
        lines, problems = _cart_lines(form.cart.data or "")
        if problems:
            errors["cart"] = problems
        drafts = []
        if not errors and drafting:
            try:
                drafts.append(RuleInSchema().load({**draft.body(), "active": True}).as_fields())
            except ma.ValidationError as error:
                errors = _rule_field_errors(flatten_messages(error.messages), draft)
        if not errors:
            try:
                result = earning.simulate(
                    db.session(),
                    external_id=form.member_id.data or None,
                    lines=lines,
                    discount=0,
                    event_type=None,
                    drafts=drafts,
                    include_active=True,
                )
            except LoyaltyError as error:
                errors = refusal_messages(error)
    return render_template(
        "console/simulate.html", form=form, draft=draft, result=result, errors=errors
    ), 422 if errors else 200


def _cart_lines(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Cart lines typed one per line as `sku, category, quantity, unit price in cents`, each
    within the API's bounds for an order line."""
    lines, problems = [], []
    for number, raw in enumerate(filter(None, (r.strip() for r in text.splitlines())), start=1):
        parts = [p.strip() for p in raw.split(",")]
        try:
            if len(parts) != 4 or not parts[2].isascii() or not parts[3].isascii():
                raise ValueError
            line = {
                "sku": parts[0],
                "category": parts[1] or None,
                "quantity": int(parts[2]),
                "unit_price": int(parts[3]),
            }
        except ValueError:  # not four parts, not whole numbers, or too many digits to read
            problems.append(
                gettext(
                    "Line %(number)s: write sku, category, quantity, unit price in cents.",
                    number=number,
                )
            )
            continue
        try:
            lines.append(LineSchema().load(line))
        except ma.ValidationError as error:
            for name, messages in flatten_messages(error.messages).items():
                problems.append(
                    gettext("Line %(number)s:", number=number) + f" {name}: {' '.join(messages)}"
                )
    if not lines and not problems:
        problems.append(gettext("Add at least one cart line."))
    return lines, problems
