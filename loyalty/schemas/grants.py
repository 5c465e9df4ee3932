"""Bulk grants as the admin API takes and shows them."""

from __future__ import annotations

import csv
import io
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from loyalty.grants.models import GrantKind, JobState, Outcome, Refusal
from loyalty.grants.services import MAX_MEMBER_IDS, BenefitToGrant, NewBulkGrant
from loyalty.ledger.policy import MAX_POINTS
from loyalty.members.segments import SEGMENT_KEY_PATTERN
from loyalty.schemas.common import EXTERNAL_ID, StrictSchema, UTCDateTime, page_schema
from loyalty.schemas.tiers import BenefitDefinitionSchema

POINTS = validate.Range(min=1, max=MAX_POINTS)
# The header a CSV's first column may carry (skipped), beside a bare list of ids.
CSV_HEADERS = {"external_id", "member_id", "id"}
MAX_CSV_CHARS = 5_000_000


# A job's request is hashed (to tell a retry under its grant_id from another request) and
# stored: params nested deeper than any benefit needs would fail both.
MAX_PARAMS_DEPTH = 8


def depth(value: Any) -> int:
    """How deeply `value` nests lists and objects, counting no deeper than one past the
    limit (so a hostile body costs nothing to measure)."""
    level, items = 0, [value]
    while items and level <= MAX_PARAMS_DEPTH:
        nested: list[Any] = []
        for item in items:
            if isinstance(item, dict):
                nested.extend(item.values())
            elif isinstance(item, list):
                nested.extend(item)
        items, level = nested, level + 1 if nested else level
    return level


class BulkBenefitSchema(BenefitDefinitionSchema):
    days = fields.Integer(
        load_default=None,
        allow_none=True,
        strict=True,
        validate=validate.Range(min=1, max=3650),
        metadata={"description": "Held this many days from the grant; null: for good."},
    )

    @ma.validates("params")
    def _shallow(self, params: dict[str, Any], **_: Any) -> None:
        if depth(params) > MAX_PARAMS_DEPTH:
            raise ma.ValidationError(f"Nested at most {MAX_PARAMS_DEPTH} levels deep.")


class BulkBudgetSchema(StrictSchema):
    points = fields.Integer(
        required=True,
        strict=True,
        validate=POINTS,
        metadata={
            "description": "The most points the job gives in all; members past it are "
            "refused with over_budget."
        },
    )


def ids_in_csv(text: str) -> list[str]:
    """The external ids in a CSV's first column, blank lines and a header row skipped.
    Raises ma.ValidationError naming the first line that is not an external id."""
    ids: list[str] = []
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as error:
        raise ma.ValidationError(f"Not CSV: {error}.", "csv") from None
    for number, row in enumerate(rows, start=1):
        cell = row[0].strip() if row else ""
        if not cell or (number == 1 and cell.lower() in CSV_HEADERS):
            continue
        try:
            EXTERNAL_ID(cell)
        except ma.ValidationError:
            raise ma.ValidationError(
                f"Line {number}: {cell[:40]!r} is not an external id.", "csv"
            ) from None
        ids.append(cell)
    return ids


class BulkGrantInSchema(StrictSchema):
    grant_id = fields.String(
        load_default=None,
        validate=validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,99}$"),
        metadata={
            "description": "Your id for the job: creating it again with the same body "
            "returns the same job (200); with another body, 409 bulk_grant_conflict."
        },
    )
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))
    points = fields.Integer(
        load_default=None,
        strict=True,
        validate=POINTS,
        metadata={"description": "Points each member gets (as an adjustment); or `benefit`."},
    )
    benefit = fields.Nested(
        BulkBenefitSchema,
        load_default=None,
        metadata={"description": "A benefit each member gets; or `points`."},
    )
    member_ids = fields.List(
        fields.String(validate=EXTERNAL_ID),
        load_default=list,
        validate=validate.Length(max=MAX_MEMBER_IDS),
        metadata={
            "description": "External ids (a repeated id counts once); or `csv`, or `segment`."
        },
    )
    csv = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=MAX_CSV_CHARS),
        metadata={
            "description": "An uploaded CSV file's text: external ids in its first "
            "column, an optional header (external_id, member_id or id)."
        },
    )
    segment = fields.String(
        load_default=None,
        validate=validate.Regexp(SEGMENT_KEY_PATTERN),
        metadata={"description": "A saved segment's key: its members as of its last refresh."},
    )
    budget = fields.Nested(BulkBudgetSchema, load_default=None)

    @ma.validates_schema
    def _one_audience(self, data: dict[str, Any], **_: Any) -> None:
        named = [key for key in ("member_ids", "csv", "segment") if data.get(key)]
        if len(named) != 1:
            raise ma.ValidationError("Name exactly one of member_ids, csv and segment.")
        if (data.get("points") is None) == (data.get("benefit") is None):
            raise ma.ValidationError("Give exactly one of points and benefit.")

    @ma.post_load
    def _command(self, data: dict[str, Any], **_: Any) -> NewBulkGrant:
        ids = data["member_ids"] or (ids_in_csv(data["csv"]) if data["csv"] else [])
        benefit = data["benefit"]
        return NewBulkGrant(
            reason=data["reason"],
            points=data["points"],
            benefit=None if benefit is None else BenefitToGrant(**benefit),
            member_ids=tuple(ids),
            segment=data["segment"],
            budget_points=None if data["budget"] is None else data["budget"]["points"],
            grant_id=data["grant_id"],
        )


class BulkGrantBenefitSchema(ma.Schema):
    class Meta:
        ordered = True

    code = fields.String(required=True)
    params = fields.Dict(required=True)
    days = fields.Integer(required=True, allow_none=True)


class BulkGrantSchema(ma.Schema):
    class Meta:
        ordered = True

    id = fields.UUID(required=True)
    grant_id = fields.String(required=True, allow_none=True)
    state = fields.Enum(JobState, by_value=True, required=True)
    kind = fields.Enum(GrantKind, by_value=True, required=True)
    points = fields.Integer(required=True, allow_none=True)
    benefit = fields.Nested(BulkGrantBenefitSchema, required=True, allow_none=True)
    reason = fields.String(required=True)
    segment = fields.String(required=True, allow_none=True)
    budget_points = fields.Integer(required=True, allow_none=True)
    total = fields.Integer(required=True, metadata={"description": "Members the job names."})
    done = fields.Integer(required=True, metadata={"description": "Members granted or refused."})
    granted = fields.Integer(required=True)
    refused = fields.Integer(required=True)
    points_granted = fields.Integer(required=True)
    error = fields.String(required=True, allow_none=True)
    actor = fields.String(required=True, allow_none=True)
    created_at = UTCDateTime(required=True)
    started_at = UTCDateTime(required=True, allow_none=True)
    finished_at = UTCDateTime(required=True, allow_none=True)


BulkGrantPageSchema = page_schema(BulkGrantSchema, "BulkGrantPage")


class BulkGrantLineSchema(ma.Schema):
    class Meta:
        ordered = True

    member_id = fields.String(required=True)
    outcome = fields.Enum(Outcome, by_value=True, required=True)
    refusal = fields.Enum(
        Refusal,
        by_value=True,
        required=True,
        allow_none=True,
        metadata={
            "description": "Why nothing was granted: unknown_member, closed_member, over_budget."
        },
    )
    points = fields.Integer(required=True)
    transaction_id = fields.UUID(required=True, allow_none=True)
    processed_at = UTCDateTime(required=True, allow_none=True)


BulkGrantReportSchema = page_schema(BulkGrantLineSchema, "BulkGrantReport")


class ReportQuerySchema(StrictSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(load_default=None, validate=validate.Length(max=100))
    outcome = fields.Enum(Outcome, by_value=True, load_default=None)
