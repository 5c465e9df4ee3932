"""Experiments over the API: the definition an admin writes, the experiment as stored, and its
results against control.

The schemas check types and bounds; what an experiment means (one control, the arms against
the target, the window's order) is checked by ``loyalty.experiments.definitions``, whose
messages name the same field paths ("arms.1.rule_ids").
"""

from __future__ import annotations

import math
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from loyalty.conclusions.results import ExperimentReport
from loyalty.experiments.definitions import (
    ARM_KEY_MAX,
    BENEFIT_CODE_MAX,
    CHANGEABLE_FIELDS,
    KEY_MAX,
    KEY_PATTERN,
    MARGIN_PATTERN,
    NAME_MAX,
    ArmDefinition,
    Eligibility,
    ExperimentChanges,
    ExperimentDefinition,
    TargetKind,
)
from loyalty.experiments.models import ExperimentStatus
from loyalty.experiments.statistics import Comparison, Estimate, ExperimentResults
from loyalty.schemas.common import JSONBoolean, StrictSchema, UTCDateTime, page_schema
from loyalty.schemas.segments import segment_keys

SLUG = "A slug: a-z, 0-9 and single hyphens."
MAX_ARMS = 20
MAX_RULES = 50
MAX_WEIGHT = 1_000_000
HYPOTHESIS_MAX = 5000

# Every interval's confidence: statistics.analyse's default, which experiment_results keeps.
CONFIDENCE = 0.95
# What each measure's interval and p-value come from (loyalty.experiments.statistics says why
# these): a reader of the results must know what was computed, not guess it from the numbers.
TESTS = {
    "conversion_uplift": "newcombe_chi_square",
    "conversion_relative_uplift": "katz_log",
    "revenue_per_member_uplift": "welch_t",
    "net_value_per_member_uplift": "welch_t",
    "sample_ratio": "chi_square_goodness_of_fit",
}
TESTS_DESCRIPTION = (
    "The method behind each measure: newcombe_chi_square (the difference of conversion "
    "rates: Newcombe's hybrid score interval from each arm's Wilson interval, p-value from "
    "Pearson's chi-square on the 2x2 table), katz_log (the ratio of rates minus one: Katz's "
    "log interval of the risk ratio, p-value as for the difference), welch_t (a difference "
    "of means per member: Welch's t interval and test, unequal variances), "
    "chi_square_goodness_of_fit (members exposed per arm against the weights)."
)


def _uuid_strings(data: dict[str, Any], name: str) -> None:
    """UUIDs as the definition stores them (strings), so a change compares equal."""
    value = data.get(name)
    if isinstance(value, list):
        data[name] = [str(item) for item in value]
    elif value is not None:
        data[name] = str(value)


class TargetSchema(StrictSchema):
    """The lever under test: a set of earning rules, one automation or one benefit."""

    kind = fields.String(
        required=True, validate=validate.OneOf([kind.value for kind in TargetKind])
    )
    rule_ids = fields.List(
        fields.UUID(),
        validate=validate.Length(max=MAX_RULES),
        metadata={"description": "rules: the earning rules under test."},
    )
    automation_id = fields.UUID(metadata={"description": "automation: the automation's id."})
    code = fields.String(
        validate=validate.Length(min=1, max=BENEFIT_CODE_MAX),
        metadata={"description": "benefit: the benefit's code.", "example": "free_shipping"},
    )

    @ma.post_load
    def _stored(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        _uuid_strings(data, "rule_ids")
        _uuid_strings(data, "automation_id")
        return data

    @ma.post_dump
    def _shown_set_only(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {key: value for key, value in data.items() if value is not None}


class ArmSchema(StrictSchema):
    """One arm; the arms' order is part of the assignment (see the README's "Experiments")."""

    key = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=ARM_KEY_MAX), validate.Regexp(KEY_PATTERN)],
        metadata={"description": SLUG, "example": "control"},
    )
    weight = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=1, max=MAX_WEIGHT),
        metadata={"description": "Its share of members is its weight over the total weight."},
    )
    control = JSONBoolean(
        load_default=False,
        metadata={"description": "The arm the others are compared with: exactly one."},
    )
    rule_ids = fields.List(
        fields.UUID(),
        allow_none=True,
        load_default=None,
        validate=validate.Length(max=MAX_RULES),
        metadata={
            "description": "A rules target: which of the target's rules apply to the arm's "
            "members ([]: none, a holdout). Null for other targets."
        },
    )
    applies = JSONBoolean(
        allow_none=True,
        load_default=None,
        metadata={
            "description": "An automation or benefit target: whether it applies to the arm's "
            "members. Null for a rules target."
        },
    )

    @ma.post_load
    def _arm(self, data: dict[str, Any], **_: Any) -> ArmDefinition:
        _uuid_strings(data, "rule_ids")
        if data["rule_ids"] is not None:
            data["rule_ids"] = tuple(data["rule_ids"])
        return ArmDefinition(**data)


class EligibilitySchema(StrictSchema):
    """Who may be exposed; every list given narrows (a member must be in one of its keys)."""

    segments = segment_keys(
        "Live saved segment keys (unknown_segment otherwise), as of the last insight refresh."
    )
    tiers = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)),
        validate=validate.Length(max=20),
        load_default=list,
        metadata={"description": "Tier codes."},
    )
    new_members_only = JSONBoolean(
        load_default=False,
        metadata={"description": "Only new members."},
    )

    @ma.post_load
    def _eligibility(self, data: dict[str, Any], **_: Any) -> Eligibility:
        return Eligibility(
            segments=tuple(data["segments"]),
            tiers=tuple(data["tiers"]),
            new_members_only=data["new_members_only"],
        )


class ExperimentInSchema(StrictSchema):
    key = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=KEY_MAX), validate.Regexp(KEY_PATTERN)],
        metadata={
            "description": f"{SLUG} Unique, and never changed: it is in the assignment hash.",
            "example": "double-points-weekend",
        },
    )
    name = fields.String(required=True, validate=validate.Length(min=1, max=NAME_MAX))
    hypothesis = fields.String(
        required=True,
        validate=validate.Length(min=1, max=HYPOTHESIS_MAX),
        metadata={"description": "What the experiment expects to show."},
    )
    target = fields.Nested(TargetSchema, required=True)
    arms = fields.List(
        fields.Nested(ArmSchema),
        required=True,
        validate=validate.Length(max=MAX_ARMS),
        metadata={"description": "At least two, in order, exactly one the control."},
    )
    eligibility = fields.Nested(
        EligibilitySchema, load_default=lambda: EligibilitySchema().load({})
    )
    starts_at = UTCDateTime(
        required=True, metadata={"description": "Members are exposed from then ..."}
    )
    ends_at = UTCDateTime(required=True, metadata={"description": "... until then (after it)."})
    margin = fields.String(
        required=True,
        validate=validate.Regexp(MARGIN_PATTERN, error="A decimal from 0 to 1, at most 4 places."),
        metadata={
            "description": "The share of revenue kept, for net value per member (revenue "
            "times the margin less points cost).",
            "example": "0.35",
        },
    )

    @ma.post_load
    def _definition(self, data: dict[str, Any], **_: Any) -> Any:
        """Loads an ExperimentDefinition (an ExperimentUpdateSchema: ExperimentChanges)."""
        return ExperimentDefinition(**{**data, "arms": tuple(data["arms"])})


class ExperimentUpdateSchema(ExperimentInSchema):
    """Load it with `partial=CHANGEABLE_FIELDS`: the fields sent become an ExperimentChanges,
    each replacing the current one whole (a target, arm or eligibility sent is read as a
    whole one). The key never changes."""

    class Meta(ExperimentInSchema.Meta):
        exclude = ("key",)

    @ma.validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ma.ValidationError("Name at least one field to change.", "_schema")

    @ma.post_load
    def _definition(self, data: dict[str, Any], **_: Any) -> Any:
        if "arms" in data:
            data["arms"] = tuple(data["arms"])
        return ExperimentChanges(**data)


def update_schema() -> ExperimentUpdateSchema:
    """The change schema as views load it: every top-level field optional, none in them."""
    return ExperimentUpdateSchema(partial=CHANGEABLE_FIELDS)


class ArmOutSchema(ma.Schema):
    class Meta:
        ordered = True

    key = fields.String(required=True)
    weight = fields.Integer(required=True)
    control = fields.Boolean(required=True)
    rule_ids = fields.List(fields.String(), required=True, allow_none=True)
    applies = fields.Boolean(required=True, allow_none=True)


class EligibilityOutSchema(ma.Schema):
    class Meta:
        ordered = True

    segments = fields.List(fields.String(), required=True)
    tiers = fields.List(fields.String(), required=True)
    new_members_only = fields.Boolean(required=True)


class ExperimentSchema(ma.Schema):
    class Meta:
        ordered = True

    id = fields.UUID(required=True)
    key = fields.String(required=True)
    name = fields.String(required=True)
    hypothesis = fields.String(required=True)
    status = fields.String(
        required=True,
        validate=validate.OneOf([status.value for status in ExperimentStatus]),
        metadata={
            "description": "draft (changes freely), running (exposes members within its "
            "window; only name and hypothesis change), stopped (exposes no one more)."
        },
    )
    target = fields.Nested(TargetSchema, required=True)
    arms = fields.List(fields.Nested(ArmOutSchema), required=True)
    eligibility = fields.Nested(EligibilityOutSchema, required=True)
    starts_at = UTCDateTime(required=True)
    ends_at = UTCDateTime(required=True)
    margin = fields.String(required=True)
    started_at = UTCDateTime(required=True, allow_none=True)
    stopped_at = UTCDateTime(
        required=True,
        allow_none=True,
        metadata={"description": "When it stopped: by an admin, or at its ends_at by the jobs."},
    )
    flagged_at = UTCDateTime(
        required=True,
        allow_none=True,
        metadata={
            "description": "When its exposures were found not to fit its weights (a "
            "sample-ratio mismatch, experiment.flagged): read no uplift of it."
        },
    )
    promoted_arm = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "The arm whose treatment became the program's, once stopped."},
    )
    promoted_at = UTCDateTime(required=True, allow_none=True)
    created_at = UTCDateTime(required=True)


ExperimentPageSchema = page_schema(ExperimentSchema, "ExperimentPage")


class PromoteSchema(StrictSchema):
    arm = fields.String(
        required=True,
        validate=validate.Length(min=1, max=ARM_KEY_MAX),
        metadata={"description": "The key of the arm to promote.", "example": "bonus"},
    )


class ExperimentListQuerySchema(StrictSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(load_default=None, validate=validate.Length(max=100))
    status = fields.String(
        load_default=None, validate=validate.OneOf([status.value for status in ExperimentStatus])
    )


class EstimateSchema(ma.Schema):
    """A treated-minus-control effect: null where it is undefined (no conversion in an arm
    for a ratio; no variance in either arm for a mean)."""

    class Meta:
        ordered = True

    value = fields.Float(required=True, allow_none=True)
    low = fields.Float(required=True, allow_none=True, metadata={"description": "Interval."})
    high = fields.Float(required=True, allow_none=True)
    p_value = fields.Float(
        required=True, allow_none=True, metadata={"description": "Of no difference, two-sided."}
    )


class ComparisonSchema(ma.Schema):
    """A treated arm against control: differences in rate (0-1) or in minor units per
    member, and the relative uplift of the rate (0.25: a quarter more)."""

    class Meta:
        ordered = True

    conversion_uplift = fields.Nested(EstimateSchema, required=True)
    conversion_relative_uplift = fields.Nested(EstimateSchema, required=True)
    revenue_per_member_uplift = fields.Nested(EstimateSchema, required=True)
    net_value_per_member_uplift = fields.Nested(EstimateSchema, required=True)


class ArmResultSchema(ma.Schema):
    class Meta:
        ordered = True

    key = fields.String(required=True)
    control = fields.Boolean(required=True)
    weight = fields.Integer(required=True)
    exposed = fields.Integer(required=True, metadata={"description": "Members exposed."})
    converted = fields.Integer(required=True, metadata={"description": "Members who ordered."})
    conversion_rate = fields.Float(required=True)
    revenue_per_member = fields.Float(
        required=True, metadata={"description": "Mean, minor units of `currency`."}
    )
    points_cost_per_member = fields.Float(
        required=True, metadata={"description": "Mean, minor units, at the point value."}
    )
    net_value_per_member = fields.Float(
        required=True, metadata={"description": "Mean revenue times the margin less points cost."}
    )
    comparison = fields.Nested(
        ComparisonSchema,
        required=True,
        allow_none=True,
        metadata={"description": "Against control (null for the control)."},
    )


class SampleRatioSchema(ma.Schema):
    class Meta:
        ordered = True

    observed = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        required=True,
        metadata={"description": "Members exposed per arm."},
    )
    expected = fields.Dict(
        keys=fields.String(),
        values=fields.Float(),
        required=True,
        metadata={"description": "What the weights lead to expect of the same total."},
    )
    p_value = fields.Float(required=True, allow_none=True)
    mismatch = fields.Boolean(
        required=True,
        metadata={
            "description": "p below 0.001: exposures do not fit the weights, assignment or "
            "exposure recording is broken and no uplift can be trusted."
        },
    )


class ResultsSchema(ma.Schema):
    class Meta:
        ordered = True

    control = fields.String(required=True, metadata={"description": "The control arm's key."})
    arms = fields.List(fields.Nested(ArmResultSchema), required=True)
    sample_ratio = fields.Nested(SampleRatioSchema, required=True)


class ExperimentResultsSchema(ma.Schema):
    class Meta:
        ordered = True

    experiment_id = fields.UUID(required=True)
    status = fields.String(required=True)
    window_start = UTCDateTime(required=True, metadata={"description": "Its starts_at."})
    window_end = UTCDateTime(
        required=True, metadata={"description": "The earliest of its ends_at, its stop, now."}
    )
    currency = fields.String(required=True, metadata={"description": "The program's."})
    margin = fields.String(required=True)
    confidence = fields.Float(
        required=True, metadata={"description": "Of every interval (two-sided)."}
    )
    tests = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={"description": TESTS_DESCRIPTION},
    )
    exposed = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        required=True,
        metadata={"description": "Members exposed per arm key."},
    )
    results = fields.Nested(
        ResultsSchema,
        required=True,
        allow_none=True,
        metadata={"description": "Null until every arm has at least two members exposed."},
    )


def finite(number: float) -> float | None:
    """JSON has no nan or infinity: an undefined figure is null."""
    return number if math.isfinite(number) else None


def _estimate(estimate: Estimate) -> dict[str, float | None]:
    return {
        "value": finite(estimate.value),
        "low": finite(estimate.low),
        "high": finite(estimate.high),
        "p_value": finite(estimate.p_value),
    }


def _comparison(comparison: Comparison) -> dict[str, Any]:
    return {
        "conversion_uplift": _estimate(comparison.conversion_uplift),
        "conversion_relative_uplift": _estimate(comparison.conversion_relative_uplift),
        "revenue_per_member_uplift": _estimate(comparison.revenue_per_member_uplift),
        "net_value_per_member_uplift": _estimate(comparison.net_value_per_member_uplift),
    }


def _results(definition: ExperimentDefinition, results: ExperimentResults) -> dict[str, Any]:
    designed = {arm.key: arm for arm in definition.arms}
    comparisons = {comparison.key: comparison for comparison in results.comparisons}
    keys = [arm.key for arm in results.arms]
    ratio = results.sample_ratio
    return {
        "control": results.control,
        "arms": [
            {
                "key": arm.key,
                "control": arm.key == results.control,
                "weight": designed[arm.key].weight,
                "exposed": arm.exposed,
                "converted": arm.converted,
                "conversion_rate": finite(arm.conversion_rate),
                "revenue_per_member": finite(arm.revenue_per_member),
                "points_cost_per_member": finite(arm.points_cost_per_member),
                "net_value_per_member": finite(arm.net_value_per_member),
                "comparison": _comparison(comparisons[arm.key]) if arm.key in comparisons else None,
            }
            for arm in results.arms
        ],
        "sample_ratio": {
            "observed": dict(zip(keys, ratio.observed, strict=True)),
            "expected": dict(zip(keys, ratio.expected, strict=True)),
            "p_value": finite(ratio.p_value),
            "mismatch": ratio.mismatch,
        },
    }


def results_body(report: ExperimentReport) -> dict[str, Any]:
    """An experiment's report as the API answers it (and the console reads it): every
    figure finite or null."""
    experiment = report.experiment
    return {
        "experiment_id": experiment.public_id,
        "status": experiment.status.value,
        "window_start": report.window_start,
        "window_end": report.window_end,
        "currency": report.currency,
        "margin": experiment.definition.margin,
        "confidence": CONFIDENCE,
        "tests": TESTS,
        "exposed": report.exposed,
        "results": _results(experiment.definition, report.results)
        if report.results is not None
        else None,
    }
