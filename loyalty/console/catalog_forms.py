"""The console's forms for what admins define beside the rules: tiers with their benefits,
rewards with their stock, coupon codes and windows, and webhook endpoints.

As in forms.py, each field's bounds are read from the API schema's field for the same value
(``schema_rules``); what a form gathered is then loaded by the API's own schema, which checks
what spans fields, and saved by the API's own service, which checks what only the database
knows. ``placed`` puts every refusal of either next to the field it names.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import marshmallow as ma
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    FieldList,
    Form,
    FormField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
    widgets,
)
from wtforms.fields.choices import SelectChoice

from loyalty.api.errors import flatten_messages, refusal_messages
from loyalty.console.automation_forms import attributes_text
from loyalty.console.forms import schema_choices, schema_rules
from loyalty.errors import LoyaltyError
from loyalty.rewards.definitions import RewardView
from loyalty.rewards.policy import format_percent
from loyalty.schemas.rewards import RewardInSchema
from loyalty.schemas.tiers import BenefitDefinitionSchema, TierInSchema
from loyalty.tiers.definitions import DefinedTier
from loyalty.webhooks.outbox import EVENT_TYPES

# Empty benefit rows below a tier's own, to add benefits with (more: save, then edit again;
# the pages need no script).
SPARE_BENEFITS = 2
ALL_EVENTS = "*"
# A browser's datetime-local input sends minutes, or seconds when the value it was given had
# them. A reward's window is shown with its seconds (the first format), so saving a reward
# unchanged never moves its window.
MOMENT_FORMATS = ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _lines(text: str | None) -> list[str]:
    """The non-blank lines of a textarea, stripped (a browser ends each with CR LF)."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _codes(text: str | None) -> list[str]:
    return [code.strip() for code in (text or "").split(",") if code.strip()]


def _moment(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def field_names(form: Iterable[Any]) -> Iterator[str]:
    """The name of every field `form` renders, a list's rows' fields included."""
    for field in form:
        if isinstance(field, FieldList):
            for entry in field:
                yield from field_names(entry.form)
        else:
            yield field.name


def field_errors(form: Iterable[Any]) -> dict[str, list[str]]:
    """The form's own errors by rendered field name, a list's rows' fields included."""
    found: dict[str, list[str]] = {}
    for field in form:
        if isinstance(field, FieldList):
            for entry in field:
                found.update(field_errors(entry.form))
        elif field.errors:
            found[field.name] = [str(message) for message in field.errors]
    return found


def placed(
    errors: Mapping[str, list[str]],
    form: Iterable[Any],
    name_of: Callable[[str], str] | None = None,
) -> dict[str, list[str]]:
    """The API's errors ({"benefits.0.params": [...]}) under the form's field names, through
    `name_of` (by default the key's first part); an error of no field the form shows goes to
    the form's top, saying what it is about."""
    names = set(field_names(form))
    found: dict[str, list[str]] = {}
    for key, messages in errors.items():
        name = name_of(key) if name_of else key.split(".")[0]
        if name in names:
            found.setdefault(name, []).extend(messages)
        else:
            found.setdefault("_schema", []).extend(
                messages if key == "_schema" else [f"{key}: {m}" for m in messages]
            )
    return found


class Gathering(Protocol):
    """A catalog form: what it gathered as the API's body, and the API's errors placed."""

    def __iter__(self) -> Iterator[Any]: ...

    def validate(self, extra_validators: Mapping[str, Sequence[Any]] | None = None) -> bool: ...

    def body(self) -> dict[str, Any]: ...

    def place(self, errors: Mapping[str, list[str]]) -> dict[str, list[str]]: ...


Saved = TypeVar("Saved")


def submit(
    form: Gathering, write: Callable[[dict[str, Any]], Saved]
) -> tuple[Saved | None, dict[str, list[str]]]:
    """Check the posted form, then `write` its body (the API's schema loads it, the API's
    service saves it); return what `write` returned, or None and the errors by field."""
    if not form.validate():
        return None, field_errors(form)
    try:
        return write(form.body()), {}
    except ma.ValidationError as error:
        return None, form.place(flatten_messages(error.messages))
    except LoyaltyError as error:
        return None, form.place(refusal_messages(error))


def _param_value(text: str) -> Any:
    """A benefit parameter's value as typed: JSON as what it says (250, true, ["tee"],
    "quoted text"), but a decimal as its text ("1.5", as a factor is written: never a
    float), and anything else as the text itself."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return text if isinstance(value, float) else value


def parse_params(text: str) -> tuple[dict[str, Any], list[str]]:
    """A benefit's `key = value` lines as its parameters, and a message per unreadable line.
    ``attributes_text`` writes them so, each reading back as it was (a list stays a list)."""
    found: dict[str, Any] = {}
    problems = []
    # Lines end at LF (a browser sends CR LF): not at every break splitlines knows, which
    # could be inside a value.
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        if not line.strip():
            continue
        key, equals, value = line.partition("=")
        if not equals or not key.strip():
            problems.append(gettext("Line %(number)s: write key = value.", number=number))
            continue
        found[key.strip()] = _param_value(value.strip())
    return found, problems


class BenefitRow(Form):
    """One benefit of a tier: its code and its parameters (a row with no code is none)."""

    code = StringField(
        _l("Benefit code"),
        filters=[_strip],
        validators=schema_rules(BenefitDefinitionSchema, "code", required=False),
    )
    params = TextAreaField(_l("Parameters, one key = value a line (factor = 1.5, points = 250)"))


class TierForm(FlaskForm):
    code = StringField(
        _l("Code (rules name the tier by it)"),
        filters=[_strip],
        validators=schema_rules(TierInSchema, "code"),
    )
    name = StringField(_l("Name"), filters=[_strip], validators=schema_rules(TierInSchema, "name"))
    rank = IntegerField(
        _l("Rank (higher is better; unique)"), validators=schema_rules(TierInSchema, "rank")
    )
    threshold = IntegerField(
        _l("Qualifying points over the tier window"),
        validators=schema_rules(TierInSchema, "threshold"),
    )
    retention_months = IntegerField(
        _l("Kept at least this many months after last qualifying"),
        validators=schema_rules(TierInSchema, "retention_months", required=True),
    )
    benefits = FieldList(FormField(BenefitRow), min_entries=SPARE_BENEFITS)

    def validate(self, extra_validators: Mapping[str, Sequence[Any]] | None = None) -> bool:
        valid: bool = super().validate(extra_validators)
        for row in self.benefits:
            if not row.code.data and (row.params.data or "").strip():
                row.code.errors = [
                    *row.code.errors,
                    gettext("Name the benefit these parameters are for."),
                ]
                valid = False
            _, problems = parse_params(row.params.data or "")
            if problems:
                row.params.errors = [*row.params.errors, *problems]
                valid = False
        return valid

    def benefit_rows(self) -> list[int]:
        """The row of each benefit the body sends, in order (rows with no code send none)."""
        return [number for number, row in enumerate(self.benefits) if row.code.data]

    def body(self) -> dict[str, Any]:
        """The tier as the API's tier body: every field, benefits in the order shown."""
        benefits = []
        for number in self.benefit_rows():
            row = self.benefits[number]
            params, _ = parse_params(row.params.data or "")
            benefits.append({"code": row.code.data, "params": params})
        return {
            "code": self.code.data,
            "name": self.name.data,
            "rank": self.rank.data,
            "threshold": self.threshold.data,
            "retention_months": self.retention_months.data,
            "benefits": benefits,
        }

    def place(self, errors: Mapping[str, list[str]]) -> dict[str, list[str]]:
        return placed(errors, self, self._name_of)

    def _name_of(self, key: str) -> str:
        """The field of an API error's key: benefits.1.params is the params of the row
        whose benefit the body sent second."""
        parts = key.split(".")
        rows = self.benefit_rows()
        if parts[0] == "benefits" and len(parts) == 3 and parts[1].isdigit():
            number = int(parts[1])
            row = self.benefits[rows[number]].form if number < len(rows) else None
            if row is not None and parts[2] in row:
                name: str = row[parts[2]].name
                return name
        return parts[0]

    @classmethod
    def of(cls, tier: DefinedTier) -> TierForm:
        """The form over a tier as it is, with its benefits and spare rows to add more."""
        form = cls(
            formdata=None,
            data={
                "code": tier.code,
                "name": tier.name,
                "rank": tier.rank,
                "threshold": tier.threshold,
                "retention_months": tier.retention_months,
                "benefits": [
                    {"code": b["code"], "params": attributes_text(b.get("params") or {})}
                    for b in tier.benefits
                ],
            },
        )
        for _ in range(SPARE_BENEFITS):
            form.benefits.append_entry()
        return form


class RewardForm(FlaskForm):
    name = StringField(
        _l("Name"),
        filters=[_strip],
        validators=schema_rules(RewardInSchema, "name"),
    )
    description = TextAreaField(
        _l("Description"), filters=[_strip], validators=schema_rules(RewardInSchema, "description")
    )
    kind = SelectField(
        _l("Kind"),
        choices=schema_choices(RewardInSchema, "kind"),
        validators=schema_rules(RewardInSchema, "kind"),
    )
    cost_points = IntegerField(
        _l("Cost in points"), validators=schema_rules(RewardInSchema, "cost_points")
    )
    value_amount = IntegerField(
        _l("Value in cents (fixed_discount)"),
        validators=schema_rules(RewardInSchema, "value_amount"),
    )
    # As typed: the schema reads "12.5" and 15 alike, and says what it refuses.
    percent_off = StringField(
        _l("Percent off (percent_discount), e.g. 15 or 12.5"),
        filters=[_strip],
    )
    valid_days = IntegerField(
        _l("Days a redeemed code is honoured (empty: no expiry)"),
        validators=schema_rules(RewardInSchema, "valid_days"),
    )
    stock = IntegerField(
        _l("Stock (empty: unlimited)"), validators=schema_rules(RewardInSchema, "stock")
    )
    # The tiers are the database's: the service refuses a code that is no tier's.
    min_tier = SelectField(_l("Lowest tier that may redeem it"), validate_choice=False)
    segments = StringField(
        _l("Saved segments the member must be in one of, comma separated (empty: anyone)")
    )
    per_member_limit = IntegerField(
        _l("Redemptions per member (empty: no limit)"),
        validators=schema_rules(RewardInSchema, "per_member_limit"),
    )
    starts_at = DateTimeLocalField(
        _l("Open from (UTC; empty: now)"),
        format=MOMENT_FORMATS,
        tz=dt.UTC,
        validators=schema_rules(RewardInSchema, "starts_at"),
    )
    ends_at = DateTimeLocalField(
        _l("Open until (UTC; empty: no end)"),
        format=MOMENT_FORMATS,
        tz=dt.UTC,
        validators=schema_rules(RewardInSchema, "ends_at"),
    )
    codes = TextAreaField(_l("Coupon codes to hand out, one a line (none: codes are generated)"))
    active = BooleanField(_l("Active"))

    def body(self) -> dict[str, Any]:
        """The reward as the API's reward body: every field (an empty one is null), and the
        codes typed, to add to its pool."""
        return {
            "name": self.name.data,
            "description": self.description.data or None,
            "kind": self.kind.data,
            "cost_points": self.cost_points.data,
            "value_amount": self.value_amount.data,
            "percent_off": self.percent_off.data or None,
            "valid_days": self.valid_days.data,
            "stock": self.stock.data,
            "min_tier": self.min_tier.data or None,
            "segments": _codes(self.segments.data),
            "per_member_limit": self.per_member_limit.data,
            "starts_at": _moment(self.starts_at.data),
            "ends_at": _moment(self.ends_at.data),
            "active": bool(self.active.data),
            "codes": _lines(self.codes.data),
        }

    def place(self, errors: Mapping[str, list[str]]) -> dict[str, list[str]]:
        """The API's errors by field, a code's or segment's own saying which it is
        (codes.3 is the fourth code typed)."""
        listed = {"codes": _lines(self.codes.data), "segments": _codes(self.segments.data)}
        named: dict[str, list[str]] = {}
        for key, lines in errors.items():
            parts = key.split(".")
            if parts[0] in listed and len(parts) == 2 and parts[1].isdigit():
                typed = listed[parts[0]]
                number = int(parts[1])
                what = repr(typed[number]) if number < len(typed) else parts[1]
                lines = [f"{what}: {line}" for line in lines]
            named.setdefault(key, []).extend(lines)
        return placed(named, self)

    def offer_tiers(self, tiers: Sequence[DefinedTier]) -> None:
        """The tiers to choose from, and the one chosen if it is no tier's any more (saving
        then says so)."""
        choices = [SelectChoice("", "any member")]
        choices += [SelectChoice(t.code, f"{t.name} ({t.code})") for t in tiers]
        chosen = self.min_tier.data
        if chosen and chosen not in {choice.value for choice in choices}:
            choices.append(SelectChoice(chosen, f"{chosen} (no such tier)"))
        self.min_tier.choices = choices

    @classmethod
    def of(cls, reward: RewardView) -> RewardForm:
        """The form over a reward as it is (no codes: the ones typed are added)."""
        return cls(
            formdata=None,
            data={
                "name": reward.name,
                "description": reward.description or "",
                "kind": reward.kind.value,
                "cost_points": reward.cost_points,
                "value_amount": reward.value_amount,
                "percent_off": None
                if reward.percent_off_bps is None
                else format_percent(reward.percent_off_bps),
                "valid_days": reward.valid_days,
                "stock": reward.stock,
                "min_tier": reward.min_tier or "",
                "segments": ", ".join(reward.segments),
                "per_member_limit": reward.per_member_limit,
                "starts_at": reward.starts_at,
                "ends_at": reward.ends_at,
                "active": reward.active,
            },
        )


class CheckboxesField(SelectMultipleField):
    """Choices as a list of checkboxes, not a multiple select (easier on a phone)."""

    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class WebhookForm(FlaskForm):
    """No rules of its own: WebhookInSchema loads what it gathered (the schema's URL check
    has no WTForms counterpart), then the service checks where the URL points."""

    url = StringField(_l("URL (https://)"), filters=[_strip])
    event_types = CheckboxesField(
        _l("Events to send"),
        choices=[SelectChoice(ALL_EVENTS, _l("all events, present and future")), *EVENT_TYPES],
        validate_choice=False,
    )
    description = StringField(_l("Description (optional)"), filters=[_strip])

    def body(self) -> dict[str, Any]:
        """The endpoint as the API's webhook body (an empty URL is not sent: missing)."""
        body: dict[str, Any] = {
            "event_types": list(self.event_types.data or []),
            "description": self.description.data or None,
        }
        if self.url.data:
            body["url"] = self.url.data
        return body

    def place(self, errors: Mapping[str, list[str]]) -> dict[str, list[str]]:
        return placed(errors, self)
