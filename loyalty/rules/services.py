"""Managing earning rules and turning them into what the pure policy computes with.

Admin writes take typed commands (``RuleDefinition`` to create, ``RuleChanges`` to change)
and every service answers with frozen views (``RuleView``, ``RuleVersionView``) built in
its transaction, so a caller never reads a live row or triggers a query."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.changes import UNCHANGED, Maybe, given
from loyalty.db import transaction
from loyalty.errors import ValidationFailed
from loyalty.members.segments import SegmentUse, check_segment_keys
from loyalty.program import config
from loyalty.rules import policy
from loyalty.rules.exceptions import RuleNotFound
from loyalty.rules.models import EarningRule, RuleKind, RuleVersion

VERSIONED_FIELDS = (
    "name",
    "active",
    "priority",
    "starts_at",
    "ends_at",
    "config",
    "conditions",
    "caps",
)
CONFIG_FIELDS = {
    RuleKind.SPEND: {"points", "per_amount"},
    RuleKind.MULTIPLIER: {"factor"},
    RuleKind.BONUS: {"points"},
    RuleKind.EVENT: {"points", "event_type"},
}
# The config is merged key by key on a change; the other versioned fields are replaced.
MERGED_FIELDS = ("config", "conditions", "caps")


@dataclass(frozen=True, slots=True)
class RuleDefinition:
    """A whole rule, as created: its kind and what every version of it stores.

    `config` holds the kind's settings (points, per_amount, factor, event_type), only those
    set."""

    kind: RuleKind
    name: str
    active: bool = True
    priority: int = 100
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    conditions: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    caps: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> RuleDefinition:
        """A definition from the stored shape: `kind` and the versioned fields (the demo's
        seed writes its rules so)."""
        return cls(
            kind=RuleKind(fields["kind"]), **{name: fields[name] for name in VERSIONED_FIELDS}
        )

    def versioned(self) -> dict[str, Any]:
        """The fields a version stores (plain dicts, copied)."""
        fields = {name: getattr(self, name) for name in VERSIONED_FIELDS}
        return {**fields, **{name: dict(fields[name]) for name in MERGED_FIELDS}}

    def as_fields(self) -> dict[str, Any]:
        """The stored shape with its kind, as the simulator's drafts take it."""
        return {"kind": self.kind.value, **self.versioned()}


@dataclass(frozen=True, slots=True)
class RuleChanges:
    """A change to a rule, becoming its next version: the fields left UNCHANGED keep their
    current values; `config`, `conditions` and `caps` are merged key by key. A `kind` is
    refused (a rule's kind never changes) but carried so the refusal can say so."""

    kind: Maybe[RuleKind] = UNCHANGED
    name: Maybe[str] = UNCHANGED
    active: Maybe[bool] = UNCHANGED
    priority: Maybe[int] = UNCHANGED
    starts_at: Maybe[dt.datetime | None] = UNCHANGED
    ends_at: Maybe[dt.datetime | None] = UNCHANGED
    config: Maybe[Mapping[str, Any]] = UNCHANGED
    conditions: Maybe[Mapping[str, Any]] = UNCHANGED
    caps: Maybe[Mapping[str, Any]] = UNCHANGED

    @property
    def fields_given(self) -> frozenset[str]:
        """The names of the fields this change sets."""
        return frozenset(given(self))


@dataclass(frozen=True, slots=True)
class RuleVersionView:
    """One version of a rule, with the rule's id and kind: what a rule's answer shows."""

    rule_id: uuid.UUID  # the rule's public id
    kind: RuleKind
    version: int
    name: str
    active: bool
    priority: int
    starts_at: dt.datetime | None
    ends_at: dt.datetime | None
    config: Mapping[str, Any]
    conditions: Mapping[str, Any]
    caps: Mapping[str, Any]
    created_at: dt.datetime
    actor: str | None  # the API key (or console user) that made this version


@dataclass(frozen=True, slots=True)
class RuleView:
    """A rule at its current version."""

    public_id: uuid.UUID
    kind: RuleKind
    active: bool
    current: RuleVersionView

    @property
    def current_version(self) -> int:
        return self.current.version

    @property
    def name(self) -> str:
        return self.current.name


@dataclass(frozen=True, slots=True)
class RuleHistory:
    """A rule and every version of it, newest first."""

    rule: RuleView
    versions: tuple[RuleVersionView, ...]


def _version_view(rule: EarningRule, version: RuleVersion) -> RuleVersionView:
    return RuleVersionView(
        rule_id=rule.public_id,
        kind=RuleKind(rule.kind),
        version=version.version,
        name=version.name,
        active=version.active,
        priority=version.priority,
        starts_at=version.starts_at,
        ends_at=version.ends_at,
        config=dict(version.config),
        conditions=dict(version.conditions),
        caps=dict(version.caps),
        created_at=version.created_at,
        actor=version.actor,
    )


def _view(rule: EarningRule, current: RuleVersion | None = None) -> RuleView:
    return RuleView(
        public_id=rule.public_id,
        kind=RuleKind(rule.kind),
        active=rule.active,
        current=_version_view(rule, current or rule.current),
    )


def check_definition(kind: RuleKind, fields: Mapping[str, Any]) -> None:
    """Raise ValidationFailed unless `fields` (the stored shape) is a valid `kind` rule."""
    config = fields["config"]
    missing = sorted(name for name in CONFIG_FIELDS[kind] if config.get(name) is None)
    if missing:
        raise ValidationFailed({name: [f"Required for {kind} rules."] for name in missing})
    extra = sorted(
        name
        for name, value in config.items()
        if value is not None and name not in CONFIG_FIELDS[kind]
    )
    if extra:
        raise ValidationFailed({name: [f"Not used by {kind} rules."] for name in extra})
    if kind == RuleKind.MULTIPLIER:
        policy.parse_factor(config["factor"])
    if kind == RuleKind.EVENT and (
        fields["conditions"].get("skus") or fields["conditions"].get("categories")
    ):
        raise ValidationFailed({"conditions": ["Event rules cannot match skus or categories."]})
    per_member = fields["caps"].get("per_member")
    if per_member and per_member.get("period_days") is None:
        raise ValidationFailed({"caps.per_member.period_days": ["Required for a member cap."]})
    starts, ends = fields.get("starts_at"), fields.get("ends_at")
    if starts and ends and ends <= starts:
        raise ValidationFailed({"ends_at": ["Must be after starts_at."]})


def _find(session: Session, rule_id: uuid.UUID, *, lock: bool = False) -> EarningRule:
    stmt = sa.select(EarningRule).where(EarningRule.public_id == rule_id)
    if lock:
        # OF: the current version is outer-joined, and PostgreSQL locks no nullable side.
        stmt = stmt.with_for_update(of=EarningRule).execution_options(populate_existing=True)
    rule = session.execute(stmt).unique().scalar_one_or_none()
    if rule is None:
        raise RuleNotFound(f"No rule with id {rule_id}.")
    return rule


def _rule_action(previous: RuleVersion | None, version: RuleVersion) -> str:
    if previous is None:
        return "rule.create"
    if previous.active and not version.active:
        return "rule.deactivate"
    return "rule.update"


def _new_version(
    session: Session, rule: EarningRule, fields: Mapping[str, Any], actor: str | None
) -> RuleVersion:
    previous = session.execute(
        sa.select(RuleVersion).where(
            RuleVersion.rule_id == rule.id, RuleVersion.version == rule.current_version - 1
        )
    ).scalar_one_or_none()
    version = RuleVersion(
        rule_id=rule.id,
        version=rule.current_version,
        actor=actor,
        **{name: fields[name] for name in VERSIONED_FIELDS},
    )
    session.add(version)
    session.flush()
    session.refresh(rule)
    config.changed(session)
    audit.record(
        session,
        actor,
        _rule_action(previous, version),
        "rule",
        rule.public_id,
        audit.snapshot(previous) if previous else None,
        audit.snapshot(version),
    )
    return version


SEGMENTS_FIELD = "conditions.segments"


def create_rule(session: Session, definition: RuleDefinition, actor: str | None) -> RuleView:
    """Create a rule at version 1 and return it. Raises ValidationFailed for a definition
    its kind cannot use, UnknownSegment (a ValidationFailed) for a `conditions.segments`
    key that is no live saved segment's."""
    fields = definition.versioned()
    check_definition(definition.kind, fields)
    with transaction(session):
        check_segment_keys(session, fields["conditions"].get("segments") or (), SEGMENTS_FIELD)
        rule = EarningRule(kind=definition.kind.value, current_version=1, active=definition.active)
        session.add(rule)
        session.flush()
        version = _new_version(session, rule, fields, actor)
        return _view(rule, version)


def update_rule(
    session: Session, rule_id: uuid.UUID, changes: RuleChanges, actor: str | None
) -> RuleView:
    """Apply `changes` as a new version of the rule and return the rule at it.

    Raises RuleNotFound, or ValidationFailed when the merged definition is invalid or the
    kind would change, UnknownSegment (a ValidationFailed) when the change names a
    `conditions.segments` key that is no live saved segment's (the keys it does not name
    are kept as they are).
    """
    if changes.kind is not UNCHANGED:
        raise ValidationFailed({"kind": ["A rule's kind cannot change; create a new rule."]})
    with transaction(session):
        rule = _find(session, rule_id, lock=True)
        if changes.conditions is not UNCHANGED:
            check_segment_keys(session, changes.conditions.get("segments") or (), SEGMENTS_FIELD)
        current = rule.current
        fields = {name: getattr(current, name) for name in VERSIONED_FIELDS}
        for name, value in given(changes).items():
            fields[name] = {**fields[name], **value} if name in MERGED_FIELDS else value
        check_definition(RuleKind(rule.kind), fields)
        rule.current_version += 1
        rule.active = fields["active"]
        version = _new_version(session, rule, fields, actor)
        return _view(rule, version)


def deactivate_rule(session: Session, rule_id: uuid.UUID, actor: str | None) -> RuleView:
    """Stop the rule from earning (as a new version, so history stays) and return it.
    Deactivating an inactive rule changes nothing. Raises RuleNotFound."""
    rule = _find(session, rule_id)
    if not rule.active:
        return _view(rule)
    return update_rule(session, rule_id, RuleChanges(active=False), actor)


def get_rule(session: Session, rule_id: uuid.UUID) -> RuleView:
    """The rule at its current version. Raises RuleNotFound."""
    return _view(_find(session, rule_id))


def list_rules(
    session: Session, *, active: bool | None, kind: str | None, limit: int, after: int | None
) -> tuple[list[RuleView], int | None]:
    """Rules newest first, one page; returns (rules, position of the next page or None)."""
    stmt = sa.select(EarningRule).order_by(EarningRule.id.desc()).limit(limit + 1)
    if active is not None:
        stmt = stmt.where(EarningRule.active.is_(active))
    if kind is not None:
        stmt = stmt.where(EarningRule.kind == kind)
    if after is not None:
        stmt = stmt.where(EarningRule.id < after)
    rules = list(session.execute(stmt).unique().scalars())
    next_position = rules[limit - 1].id if len(rules) > limit else None
    return [_view(rule) for rule in rules[:limit]], next_position


def rules_naming_segment(session: Session, key: str) -> list[SegmentUse]:
    """The rules whose current version names the saved segment `key` in its conditions,
    active or not (an inactive rule can be made active again), oldest first."""
    # Rules are admin-made, a few hundred at most: read their conditions and look here, not
    # with a JSON containment that PostgreSQL and SQLite spell differently.
    rows = session.execute(
        sa.select(EarningRule.public_id, RuleVersion.name, RuleVersion.conditions)
        .join(
            RuleVersion,
            sa.and_(
                RuleVersion.rule_id == EarningRule.id,
                RuleVersion.version == EarningRule.current_version,
            ),
        )
        .order_by(EarningRule.id)
    )
    return [
        SegmentUse(kind="rule", id=public_id, name=name)
        for public_id, name, conditions in rows
        if key in (conditions.get("segments") or ())
    ]


def rule_history(session: Session, rule_id: uuid.UUID) -> RuleHistory:
    """The rule at its current version and every version of it, newest first. Raises
    RuleNotFound."""
    rule = _find(session, rule_id)
    stmt = (
        sa.select(RuleVersion)
        .where(RuleVersion.rule_id == rule.id)
        .order_by(RuleVersion.version.desc())
    )
    versions = tuple(_version_view(rule, v) for v in session.execute(stmt).scalars())
    return RuleHistory(rule=_view(rule), versions=versions)


def list_versions(session: Session, rule_id: uuid.UUID) -> tuple[RuleVersionView, ...]:
    """Every version of the rule, newest first. Raises RuleNotFound."""
    return rule_history(session, rule_id).versions


def version_fields(version: RuleVersion) -> dict[str, Any]:
    return {name: getattr(version, name) for name in VERSIONED_FIELDS}
