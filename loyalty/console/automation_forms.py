"""The console's automation form, for a new automation and for an automation's next version.

The form has no rules of its own: it gathers what the admin typed into the API's body and
the API's schemas load it (AutomationInSchema, AutomationUpdateSchema partial), then the same
services check what only the database knows (the rule, segments and reward named) and write
the audit entry. So the form and the API can never disagree, and every error is found in
one pass, shown next to its field. WTForms only renders the fields and keeps what was typed
(a number field holding "abc" shows "abc" again, beside the schema's "Not a valid
integer.").

The trigger's parameter fields are made from TriggerSchema's fields, and which kinds take
each from ``definitions.parameter_names``: a new trigger kind or parameter needs no change
here or in the template. Every parameter field is sent (without script all show); only
those of the chosen kind are read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import marshmallow as ma
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_babel.speaklater import LazyString
from flask_wtf import FlaskForm
from wtforms import BooleanField, Field, IntegerField, SelectField, StringField, TextAreaField

from loyalty.automations.definitions import parameter_names
from loyalty.automations.models import ActionType, TriggerKind
from loyalty.automations.services import AutomationVersionView
from loyalty.console.forms import schema_choices
from loyalty.schemas.automations import TriggerSchema

# The action types this form edits. An automation's actions of any other type are kept as
# they are by an edit (and listed as such): the form never drops what it cannot show.
FORM_ACTIONS: tuple[str, ...] = (ActionType.WEBHOOK.value, ActionType.GRANT_POINTS.value)
PARAMETER_PREFIX = "trigger_"
# An integer as typed; anything else goes to the schema as text, which refuses it with its
# own message. 19 digits at most: past any bound, and no giant int is ever parsed.
INTEGER = re.compile(r"[+-]?\d{1,19}")


@dataclass(frozen=True, slots=True)
class TriggerParameter:
    """One parameter of TriggerSchema as a form field: the kinds that take it."""

    name: str  # in the trigger (TriggerSchema's field)
    field_name: str  # in the form
    kinds: tuple[str, ...]
    integer: bool
    hint: str | LazyString


# Each parameter's hint in the reader's language. The English is the schema's description
# (the API's documentation); a test keeps the two equal.
HINTS = {
    "delay_days": _l("enrolled: days after enrolment (0: at the next jobs run)."),
    "days": _l("inactive: days without a purchase."),
    "within_days": _l(
        "points_expiring: available points expire within this many days; tier_at_risk: the "
        "tier's retention review is within this many days."
    ),
    "factor": _l(
        "repurchase_due: due once the member's mean gap between purchase "
        'days times this has passed since the last (default "1").'
    ),
    "default_gap_days": _l(
        "repurchase_due: the gap for members with fewer than min_purchase_days purchase days."
    ),
    "min_purchase_days": _l("repurchase_due: purchase days needed for an own gap (default 3)."),
    "segment": _l(
        "segment_entered, segment_left: a live saved segment's key (unknown_segment otherwise)."
    ),
    "reward_id": _l("reward_affordable: only this reward (default: any active one)."),
    "after_hours": _l(
        "cart_abandoned: hours since the cart's last quote without an order naming it (1 to 720)."
    ),
}

# Each parameter's label in the reader's language: its name in words (delay_days: Delay days).
LABELS = {
    "delay_days": _l("Delay days"),
    "days": _l("Days"),
    "within_days": _l("Within days"),
    "factor": _l("Factor"),
    "default_gap_days": _l("Default gap days"),
    "min_purchase_days": _l("Min purchase days"),
    "segment": _l("Segment"),
    "reward_id": _l("Reward id"),
    "after_hours": _l("After hours"),
}


def _parameters() -> tuple[TriggerParameter, ...]:
    found = []
    for name, schema_field in TriggerSchema().fields.items():
        kinds = tuple(kind.value for kind in TriggerKind if name in parameter_names(kind))
        if not kinds:  # `kind` itself
            continue
        description = schema_field.metadata.get("description")
        found.append(
            TriggerParameter(
                name=name,
                field_name=PARAMETER_PREFIX + name,
                kinds=kinds,
                integer=isinstance(schema_field, ma.fields.Integer),
                hint=HINTS.get(name) or description or f"For {', '.join(kinds)}.",
            )
        )
    return tuple(found)


TRIGGER_PARAMETERS = _parameters()


def _typed_text(value: str) -> int | str | None:
    """An integer field's text: an int, None when empty, else the text itself."""
    if not value:
        return None
    return int(value) if INTEGER.fullmatch(value) else value


def _codes(text: str) -> list[str]:
    return [code.strip() for code in text.split(",") if code.strip()]


def _attribute_value(text: str) -> Any:
    """A member attribute's value as typed: true, false and integers as such, "quoted" text
    as the text inside, anything else as the text itself."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str | int) else text  # bools are ints


def attributes_text(metadata: Mapping[str, Any]) -> str:
    """Metadata conditions as the form shows them, one `key = value` a line; read back by
    ``parse_attributes`` into the same values (text that would read as something else is
    quoted)."""
    lines = []
    for key, value in metadata.items():
        # Bare only when it reads back as itself: "true", "12", " padded" are quoted.
        # Line breaks too: a browser sends every one in a textarea as CR LF.
        bare = isinstance(value, str) and value == value.strip() and not set(value) & {"\r", "\n"}
        if bare and _attribute_value(value) == value:
            lines.append(f"{key} = {value}")
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines)


def parse_attributes(text: str) -> tuple[dict[str, Any], list[str]]:
    """The `key = value` lines as metadata conditions, and a message per unreadable line."""
    found: dict[str, Any] = {}
    problems = []
    # Lines end at LF (a browser sends CR LF): not at every break splitlines knows, which
    # could be inside a key or value.
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        if not line.strip():
            continue
        key, equals, value = line.partition("=")
        if not equals or not key.strip():
            problems.append(gettext("Line %(number)s: write key = value.", number=number))
            continue
        found[key.strip()] = _attribute_value(value.strip())
    return found, problems


@dataclass(frozen=True, slots=True)
class Draft:
    """What the form gathered: the API's body, which form action each of its actions is
    (None: kept as it was), and the problems found before the schema (API field names)."""

    body: dict[str, Any]
    action_types: tuple[str | None, ...]
    problems: dict[str, list[str]] = field(default_factory=dict)


def _raw(form_field: Field) -> str:
    """The field's text as posted (or as set, on a form made from values)."""
    if form_field.raw_data:
        return str(form_field.raw_data[0]).strip()
    return "" if form_field.data is None else str(form_field.data).strip()


class AutomationForm(FlaskForm):
    name = StringField(_l("Name"))
    kind = SelectField(
        _l("Kind"),
        choices=schema_choices(TriggerSchema, "kind"),
        validate_choice=False,
    )
    # The trigger's parameters: one field each, added below from TRIGGER_PARAMETERS.
    tiers = StringField(_l("Tiers (codes, comma separated; empty: any)"))
    segments = StringField(_l("Saved segments (keys, comma separated; empty: any)"))
    predicted_value_min = IntegerField(_l("Predicted value from (minor units)"))
    predicted_value_max = IntegerField(_l("Predicted value up to (minor units)"))
    metadata = TextAreaField(
        'Member attributes, one key = value a line (true, false, 12 as such; "12" as text)'
    )
    webhook = BooleanField(_l("Send an automation.fired webhook"))
    grant = BooleanField(_l("Grant points"))
    grant_rule_id = SelectField(_l("Through the bonus rule"), choices=[], validate_choice=False)
    grant_points = IntegerField(_l("Points (empty: the rule's own)"))
    dedup_days = IntegerField(_l("At most once per member within (days; empty: no such limit)"))
    active = BooleanField(_l("Active"))

    def parameter_fields(self) -> list[tuple[TriggerParameter, Field]]:
        return [(each, self[each.field_name]) for each in TRIGGER_PARAMETERS]

    def draft(self, kept: Sequence[Mapping[str, Any]] = ()) -> Draft:
        """The API's body for what was typed, with the `kept` actions after the form's."""
        kind = _raw(self.kind)
        trigger: dict[str, Any] = {"kind": kind}
        for each, form_field in self.parameter_fields():
            if kind not in each.kinds:  # another kind's: ignored
                continue
            text = _raw(form_field)
            value = _typed_text(text) if each.integer else text or None
            if value is not None:
                trigger[each.name] = value
        metadata, unreadable = parse_attributes(self.metadata.data or "")
        low, high = (
            _typed_text(_raw(self.predicted_value_min)),
            _typed_text(_raw(self.predicted_value_max)),
        )
        conditions = {
            "tiers": _codes(self.tiers.data or ""),
            "segments": _codes(self.segments.data or ""),
            "predicted_value": None if low is None and high is None else {"min": low, "max": high},
            "metadata": metadata,
        }
        actions: list[dict[str, Any]] = []
        types: list[str | None] = []
        if ActionType.WEBHOOK in FORM_ACTIONS and self.webhook.data:
            actions.append({"type": ActionType.WEBHOOK.value})
            types.append(ActionType.WEBHOOK.value)
        if ActionType.GRANT_POINTS in FORM_ACTIONS and self.grant.data:
            actions.append(
                {
                    "type": ActionType.GRANT_POINTS.value,
                    "rule_id": _raw(self.grant_rule_id) or None,
                    "points": _typed_text(_raw(self.grant_points)),
                }
            )
            types.append(ActionType.GRANT_POINTS.value)
        for action in kept:
            actions.append(dict(action))
            types.append(None)
        body = {
            "name": _raw(self.name),
            "active": bool(self.active.data),
            "trigger": trigger,
            "conditions": conditions,
            "actions": actions,
            "dedup_days": _typed_text(_raw(self.dedup_days)),
        }
        problems = {"conditions.metadata": unreadable} if unreadable else {}
        return Draft(body, tuple(types), problems)

    def field_errors(self, errors: Mapping[str, list[str]], draft: Draft) -> dict[str, list[str]]:
        """The API's errors (trigger.days, conditions.tiers.0, actions.1.rule_id) under the
        form's field names; `actions` for the actions as a whole or one the form keeps, and
        `_schema` for the rest."""
        named: dict[str, list[str]] = {}
        for key, messages in errors.items():
            name = self._field_of(key.split("."), draft)
            if name == "_schema" and key != "_schema":
                messages = [f"{key}: {message}" for message in messages]
            named.setdefault(name, []).extend(messages)
        return named

    def _field_of(self, parts: list[str], draft: Draft) -> str:
        head, rest = parts[0], parts[1:]
        if head in ("name", "active", "dedup_days"):
            return head
        if head == "trigger":
            wanted = PARAMETER_PREFIX + rest[0] if rest else "kind"
            return wanted if wanted in self else "kind"
        if head == "conditions" and rest:
            if rest[0] == "predicted_value":
                return "predicted_value_max" if rest[1:] == ["max"] else "predicted_value_min"
            return rest[0] if rest[0] in ("tiers", "segments", "metadata") else "_schema"
        if head == "actions":
            position = int(rest[0]) if rest and rest[0].isdigit() else len(draft.action_types)
            types = (*draft.action_types, None)  # None: an action the form keeps as it was
            if types[min(position, len(types) - 1)] == ActionType.GRANT_POINTS and rest[1:]:
                return {"rule_id": "grant_rule_id", "points": "grant_points"}.get(
                    rest[1], "actions"
                )
            return "actions"
        return "_schema"


for _parameter in TRIGGER_PARAMETERS:
    # WTForms takes fields set on the class before it is first instantiated.
    setattr(
        AutomationForm,
        _parameter.field_name,
        (IntegerField if _parameter.integer else StringField)(
            LABELS.get(_parameter.name) or _parameter.name.replace("_", " ").capitalize()
        ),
    )


def initial(version: AutomationVersionView) -> dict[str, Any]:
    """The form's values for a version (the edit form starts from the current one)."""
    trigger, conditions = version.trigger, version.conditions
    grant = next((a for a in version.actions if a["type"] == ActionType.GRANT_POINTS), None)
    value = conditions.get("predicted_value") or {}
    return {
        "name": version.name,
        "active": version.active,
        "kind": trigger["kind"],
        **{each.field_name: trigger.get(each.name) for each in TRIGGER_PARAMETERS},
        "tiers": ", ".join(conditions.get("tiers") or ()),
        "segments": ", ".join(conditions.get("segments") or ()),
        "predicted_value_min": value.get("min"),
        "predicted_value_max": value.get("max"),
        "metadata": attributes_text(conditions.get("metadata") or {}),
        "webhook": any(a["type"] == ActionType.WEBHOOK for a in version.actions),
        "grant": grant is not None,
        "grant_rule_id": (grant or {}).get("rule_id", ""),
        "grant_points": (grant or {}).get("points"),
        "dedup_days": version.dedup_days,
    }


def kept_actions(version: AutomationVersionView) -> list[Mapping[str, Any]]:
    """The version's actions this form does not edit: an edit keeps them untouched."""
    return [action for action in version.actions if action["type"] not in FORM_ACTIONS]
