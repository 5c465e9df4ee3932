"""The console's forms (WTForms through Flask-WTF, which also gives every form its CSRF token).

A field's bounds are read from the API schema's field for the same value (``schema_rules``),
never written again here: a number the API refuses (an adjustment of 1,000,000,001 points)
is refused by the form too. The use cases' schemas still load what a form gathered, for the
rules that span fields (a spend rule needs points and per_amount; expiry needs months).
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from marshmallow import validate
from wtforms import (
    BooleanField,
    Form,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    AnyOf,
    InputRequired,
    Length,
    NoneOf,
    NumberRange,
    Optional,
    Regexp,
)

from loyalty import days
from loyalty.schemas.ledger import AdjustmentSchema
from loyalty.schemas.members import MemberUpdateSchema
from loyalty.schemas.privacy import MergeSchema
from loyalty.schemas.program import (
    ExpirySchema,
    PointValueSchema,
    ProgramSchema,
    ReferralSettingsSchema,
)
from loyalty.schemas.rules import (
    BudgetSchema,
    CapsSchema,
    ConditionsSchema,
    RuleInSchema,
    SimulateSchema,
)

# Marshmallow's own "required" message, in the reader's language (a schema's message of its
# own is the API's, and stays as it is).
REQUIRED = _l("Missing data for required field.")
# (name, the form field's name) of each condition typed as comma-separated codes.
LIST_CONDITIONS = ("skus", "categories", "tiers")


def _field(schema: type[ma.Schema], name: str) -> ma.fields.Field[Any]:
    return schema().fields[name]


def schema_rules(schema: type[ma.Schema], name: str, *, required: bool | None = None) -> list[Any]:
    """WTForms validators with the bounds of the field `name` of the API's `schema`: required
    (with the API's message) or optional, and each of its Range, Length, Regexp and OneOf.

    `required` overrides the schema's (a console form sends every setting a PATCH may leave
    out). Raises TypeError for a validator with no WTForms counterpart, so no bound of the
    API is ever dropped here in silence.
    """
    field = _field(schema, name)
    required = field.required if required is None else required
    message = field.error_messages["required"]
    if message == ma.fields.Field.default_error_messages["required"]:
        message = REQUIRED
    rules: list[Any] = [InputRequired(message=message)] if required else [Optional()]
    for rule in field.validators:
        if isinstance(rule, validate.Range):
            if not (rule.min_inclusive and rule.max_inclusive):
                raise TypeError(f"{schema.__name__}.{name}: only inclusive ranges map to WTForms")
            rules.append(NumberRange(min=rule.min, max=rule.max))
        elif isinstance(rule, validate.Length) and rule.equal is None:
            low = -1 if rule.min is None else rule.min
            rules.append(Length(min=low, max=-1 if rule.max is None else rule.max))
        elif isinstance(rule, validate.Regexp):
            message = rule.error.format(input="", regex=rule.regex.pattern)
            rules.append(Regexp(rule.regex, message=message))
        elif isinstance(rule, validate.OneOf):
            rules.append(AnyOf(list(rule.choices)))
        else:
            raise TypeError(f"{schema.__name__}.{name}: no WTForms counterpart for {rule!r}")
    return rules


def schema_choices(schema: type[ma.Schema], name: str) -> list[str]:
    """The values the API's OneOf allows for the field `name` of `schema`."""
    for rule in _field(schema, name).validators:
        if isinstance(rule, validate.OneOf):
            return [str(choice) for choice in rule.choices]
    raise TypeError(f"{schema.__name__}.{name} has no OneOf")


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class LoginForm(FlaskForm):
    api_key = PasswordField(_l("Admin API key"), filters=[_strip], validators=[InputRequired()])


class AdjustForm(FlaskForm):
    points = IntegerField(
        _l("Points (negative to remove)"),
        validators=[
            *schema_rules(AdjustmentSchema, "points"),
            NoneOf([0], message=_l("Must not be zero.")),
        ],
    )
    reason = StringField(
        _l("Reason"), filters=[_strip], validators=schema_rules(AdjustmentSchema, "reason")
    )


class StatusForm(FlaskForm):
    status = SelectField(
        _l("Status"),
        choices=schema_choices(MemberUpdateSchema, "status"),
        validators=schema_rules(MemberUpdateSchema, "status", required=True),
    )


class MergeForm(FlaskForm):
    into = StringField(
        _l("Merge this member into (their customer id)"),
        filters=[_strip],
        validators=schema_rules(MergeSchema, "into", required=True),
    )


class EraseForm(FlaskForm):
    """Erasing is final: the admin types the member's id again to confirm."""

    confirm = StringField(_l("Type the member's id to confirm"), filters=[_strip])


class ProgramForm(FlaskForm):
    """Every program setting at once, as the console's program page edits them."""

    currency = StringField(
        _l("Currency (ISO 4217)"),
        filters=[_strip],
        validators=schema_rules(ProgramSchema, "currency", required=True),
    )
    point_value_points = IntegerField(
        _l("Points ..."), validators=schema_rules(PointValueSchema, "points")
    )
    point_value_amount = IntegerField(
        _l("... are worth (cents)"), validators=schema_rules(PointValueSchema, "amount")
    )
    pending_days = IntegerField(
        _l("Return window (days)"),
        validators=schema_rules(ProgramSchema, "pending_days", required=True),
    )
    expiry_policy = SelectField(
        _l("Expiry policy"),
        choices=schema_choices(ExpirySchema, "policy"),
        validators=schema_rules(ExpirySchema, "policy"),
    )
    # Optional here: the schema requires it unless the policy is never.
    expiry_months = IntegerField(
        _l("Expiry (months)"),
        validators=schema_rules(ExpirySchema, "months"),
    )
    hold_ttl_seconds = IntegerField(
        _l("Hold lifetime (seconds)"),
        validators=schema_rules(ProgramSchema, "hold_ttl_seconds", required=True),
    )
    max_redemption_percent = IntegerField(
        _l("Share of an order payable in points (%)"),
        validators=schema_rules(ProgramSchema, "max_redemption_percent", required=True),
    )
    min_redemption_points = IntegerField(
        _l("Minimum redemption (points)"),
        validators=schema_rules(ProgramSchema, "min_redemption_points", required=True),
    )
    tier_window_months = IntegerField(
        _l("Tier window (months)"),
        validators=schema_rules(ProgramSchema, "tier_window_months", required=True),
    )
    # A list, not the API's free text: every IANA name this system knows (the API's check;
    # the select refuses anything else). Not sent: the zone stays as it is.
    time_zone = SelectField(
        _l("Time zone (days, months and dates)"),
        choices=sorted(days.available_zones()),
        validators=[Optional()],
    )
    referral_referrer_points = IntegerField(
        _l("Referral: points for the referrer"),
        validators=schema_rules(ReferralSettingsSchema, "referrer_points"),
    )
    referral_friend_points = IntegerField(
        _l("Referral: points for the friend"),
        validators=schema_rules(ReferralSettingsSchema, "friend_points"),
    )
    # Blank: no limit (the API's null).
    referral_max_per_period = IntegerField(
        _l("Referral: most rewarded per referrer and period (blank: no limit)"),
        validators=schema_rules(ReferralSettingsSchema, "max_per_period", required=False),
    )
    referral_period_days = IntegerField(
        _l("Referral: limit period (days)"),
        validators=schema_rules(ReferralSettingsSchema, "period_days"),
    )

    def body(self) -> dict[str, Any]:
        """The settings as the API's PATCH /admin/program body."""
        return {
            "currency": self.currency.data,
            "point_value": {
                "points": self.point_value_points.data,
                "amount": self.point_value_amount.data,
            },
            "pending_days": self.pending_days.data,
            "expiry": {"policy": self.expiry_policy.data, "months": self.expiry_months.data},
            "hold_ttl_seconds": self.hold_ttl_seconds.data,
            "max_redemption_percent": self.max_redemption_percent.data,
            "min_redemption_points": self.min_redemption_points.data,
            "tier_window_months": self.tier_window_months.data,
            "referral": {
                "referrer_points": self.referral_referrer_points.data,
                "friend_points": self.referral_friend_points.data,
                "max_per_period": self.referral_max_per_period.data,
                "period_days": self.referral_period_days.data,
            },
            **({"time_zone": self.time_zone.data} if self.time_zone.raw_data else {}),
        }

    @staticmethod
    def initial(settings: dict[str, Any]) -> dict[str, Any]:
        """The form's values for the API's settings (``settings_to_dict``)."""
        return {
            **settings,
            "point_value_points": settings["point_value"]["points"],
            "point_value_amount": settings["point_value"]["amount"],
            "expiry_policy": settings["expiry"]["policy"],
            "expiry_months": settings["expiry"]["months"],
            **{f"referral_{name}": value for name, value in settings["referral"].items()},
        }


class RuleFields(Form):
    """An earning rule's fields; the rule form's, and the simulator's draft (prefixed)."""

    kind = SelectField(
        _l("Kind"),
        choices=schema_choices(RuleInSchema, "kind"),
        validators=schema_rules(RuleInSchema, "kind"),
    )
    name = StringField(_l("Name"), filters=[_strip], validators=schema_rules(RuleInSchema, "name"))
    priority = IntegerField(
        _l("Priority (lower runs first)"), validators=schema_rules(RuleInSchema, "priority")
    )
    points = IntegerField(
        _l("Points (spend: per amount; bonus, event: fixed)"),
        validators=schema_rules(RuleInSchema, "points"),
    )
    per_amount = IntegerField(
        _l("Per amount in cents (spend)"), validators=schema_rules(RuleInSchema, "per_amount")
    )
    factor = StringField(
        _l("Factor, e.g. 1.5 (multiplier)"),
        filters=[_strip],
        validators=schema_rules(RuleInSchema, "factor"),
    )
    event_type = StringField(
        _l("Event type (event)"),
        filters=[_strip],
        validators=schema_rules(RuleInSchema, "event_type"),
    )
    # Each code's bounds and how many there may be: the schema checks them once split.
    categories = StringField(_l("Categories, comma separated"), validators=[Optional()])
    skus = StringField(_l("SKUs, comma separated"), validators=[Optional()])
    tiers = StringField(_l("Tiers, comma separated"), validators=[Optional()])
    min_amount = IntegerField(
        _l("Minimum order amount in cents"), validators=schema_rules(ConditionsSchema, "min_amount")
    )
    cap_per_order = IntegerField(
        _l("Cap per order (points)"), validators=schema_rules(CapsSchema, "per_order")
    )
    first_order = BooleanField(_l("First order only"))
    budget_period = SelectField(
        _l("Budget across all members"),
        choices=[SelectChoice("", _l("none")), *schema_choices(BudgetSchema, "period")],
        default="",
    )
    budget_points = IntegerField(
        _l("Budget in points per period"), validators=schema_rules(BudgetSchema, "points")
    )
    budget_amount = IntegerField(
        _l("or budget in cents per period (at the point value)"),
        validators=schema_rules(BudgetSchema, "amount"),
    )

    def body(self) -> dict[str, Any]:
        """The rule as the API's rule body (fields left empty are not sent)."""
        body: dict[str, Any] = {
            name: self[name].data
            for name in ("name", "kind", "priority", "points", "per_amount", "factor", "event_type")
            if name in self and self[name].data not in (None, "")
        }
        conditions: dict[str, Any] = {}
        for name in LIST_CONDITIONS:
            codes = [code.strip() for code in (self[name].data or "").split(",") if code.strip()]
            if codes:
                conditions[name] = codes
        if self.min_amount.data is not None:
            conditions["min_amount"] = self.min_amount.data
        if self.first_order.data:
            conditions["first_order"] = True
        body["conditions"] = conditions
        if self.cap_per_order.data is not None:
            body["caps"] = {"per_order": self.cap_per_order.data}
        if self.budget_period.data:
            body["budget"] = {
                "period": self.budget_period.data,
                "points": self.budget_points.data,
                "amount": self.budget_amount.data,
            }
        return body


class RuleForm(FlaskForm, RuleFields):
    active = BooleanField(_l("Active"))

    def body(self) -> dict[str, Any]:
        return {**super().body(), "active": bool(self.active.data)}


class RuleEditForm(RuleForm):
    """A rule's kind never changes: the edit form does not send it. The form shows the whole
    current version, so a budget left at "none" removes the rule's budget."""

    kind = None

    def body(self) -> dict[str, Any]:
        return {"budget": None, **super().body()}


class SimulateForm(FlaskForm):
    member_id = StringField(
        _l("Member (optional)"),
        filters=[_strip],
        validators=schema_rules(SimulateSchema, "member_id"),
    )
    cart = TextAreaField(
        _l("Cart: one line per item, sku, category, quantity, unit price in cents"),
        default="tee-black-m, apparel, 2, 2500",
    )


def form_errors(form: Form) -> dict[str, list[str]]:
    """The form's errors by field name (a prefixed form's names keep their prefix)."""
    # str(): a message may be lazy (translated when read), and the pages join them.
    return {form[name].name: [str(m) for m in messages] for name, messages in form.errors.items()}
