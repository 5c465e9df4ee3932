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
from loyalty.changes import UNCHANGED, given
from loyalty.db import transaction, utcnow
from loyalty.errors import ValidationFailed
from loyalty.members.segments import SegmentUse, check_segment_keys
from loyalty.program import config
from loyalty.rules import budgets, policy
from loyalty.rules.definitions import (
    MERGED_FIELDS,
    VERSIONED_FIELDS,
    RuleChanges,
    RuleDefinition,
    check_definition,
)
from loyalty.rules.exceptions import RuleNotFound
from loyalty.rules.models import EarningRule, RuleKind, RuleVersion


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
    budget: Mapping[str, Any] | None
    created_at: dt.datetime
    actor: str | None  # the API key (or console user) that made this version


@dataclass(frozen=True, slots=True)
class RuleView:
    """A rule at its current version, with its budget's usage in the current period (None
    without a budget)."""

    public_id: uuid.UUID
    kind: RuleKind
    active: bool
    current: RuleVersionView
    budget_usage: budgets.BudgetUsageView | None = None

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
        budget=dict(version.budget) if version.budget else None,
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


def _with_usage(session: Session, views: list[RuleView], now: dt.datetime) -> list[RuleView]:
    """`views` with their budgets' usage in the period `now` falls in (one query)."""
    by_id = {
        view.public_id: policy.Budget.from_fields(view.current.budget)
        for view in views
        if view.current.budget
    }
    if not by_id:
        return views
    row_ids = dict(
        session.execute(
            sa.select(EarningRule.public_id, EarningRule.id).where(EarningRule.public_id.in_(by_id))
        ).all()
    )
    settings = config.current(session).settings
    found = budgets.usage(
        session, {row_ids[public_id]: budget for public_id, budget in by_id.items()}, settings, now
    )
    return [
        dataclasses.replace(view, budget_usage=found[row_ids[view.public_id]])
        if view.public_id in by_id
        else view
        for view in views
    ]


def _one_with_usage(session: Session, view: RuleView, now: dt.datetime | None) -> RuleView:
    return _with_usage(session, [view], now or utcnow())[0]


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


def create_rule(
    session: Session, definition: RuleDefinition, actor: str | None, now: dt.datetime | None = None
) -> RuleView:
    """Create a rule at version 1 and return it (with its budget's usage as of `now`).
    Raises ValidationFailed for a definition its kind cannot use, UnknownSegment (a
    ValidationFailed) for a `conditions.segments` key that is no live saved segment's."""
    fields = definition.versioned()
    check_definition(definition.kind, fields)
    with transaction(session):
        check_segment_keys(session, fields["conditions"].get("segments") or (), SEGMENTS_FIELD)
        rule = EarningRule(kind=definition.kind.value, current_version=1, active=definition.active)
        session.add(rule)
        session.flush()
        version = _new_version(session, rule, fields, actor)
        return _one_with_usage(session, _view(rule, version), now)


def update_rule(
    session: Session,
    rule_id: uuid.UUID,
    changes: RuleChanges,
    actor: str | None,
    now: dt.datetime | None = None,
) -> RuleView:
    """Apply `changes` as a new version of the rule and return the rule at it (with its
    budget's usage as of `now`: the usage of a period counts across versions).

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
        return _one_with_usage(session, _view(rule, version), now)


def deactivate_rule(
    session: Session, rule_id: uuid.UUID, actor: str | None, now: dt.datetime | None = None
) -> RuleView:
    """Stop the rule from earning (as a new version, so history stays) and return it.
    Deactivating an inactive rule changes nothing. Raises RuleNotFound."""
    rule = _find(session, rule_id)
    if not rule.active:
        return _one_with_usage(session, _view(rule), now)
    return update_rule(session, rule_id, RuleChanges(active=False), actor, now)


def activate_rule(
    session: Session, rule_id: uuid.UUID, actor: str | None, now: dt.datetime | None = None
) -> RuleView:
    """Let an inactive rule earn again (as a new version, audited as an update, exactly as a
    change of `active` through the API) and return it. Activating an active rule changes
    nothing. Raises RuleNotFound."""
    rule = _find(session, rule_id)
    if rule.active:
        return _one_with_usage(session, _view(rule), now)
    return update_rule(session, rule_id, RuleChanges(active=True), actor, now)


def get_rule(session: Session, rule_id: uuid.UUID, now: dt.datetime | None = None) -> RuleView:
    """The rule at its current version, with its budget's usage as of `now`. Raises
    RuleNotFound."""
    return _one_with_usage(session, _view(_find(session, rule_id)), now)


def list_rules(
    session: Session,
    *,
    active: bool | None,
    kind: str | None,
    limit: int,
    after: int | None,
    now: dt.datetime | None = None,
) -> tuple[list[RuleView], int | None]:
    """Rules newest first, one page, with their budgets' usage as of `now`; returns (rules,
    position of the next page or None)."""
    stmt = sa.select(EarningRule).order_by(EarningRule.id.desc()).limit(limit + 1)
    if active is not None:
        stmt = stmt.where(EarningRule.active.is_(active))
    if kind is not None:
        stmt = stmt.where(EarningRule.kind == kind)
    if after is not None:
        stmt = stmt.where(EarningRule.id < after)
    rules = list(session.execute(stmt).unique().scalars())
    next_position = rules[limit - 1].id if len(rules) > limit else None
    views = [_view(rule) for rule in rules[:limit]]
    return _with_usage(session, views, now or utcnow()), next_position


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


def rule_history(
    session: Session, rule_id: uuid.UUID, now: dt.datetime | None = None
) -> RuleHistory:
    """The rule at its current version (with its budget's usage as of `now`) and every
    version of it, newest first. Raises RuleNotFound."""
    rule = _find(session, rule_id)
    stmt = (
        sa.select(RuleVersion)
        .where(RuleVersion.rule_id == rule.id)
        .order_by(RuleVersion.version.desc())
    )
    versions = tuple(_version_view(rule, v) for v in session.execute(stmt).scalars())
    return RuleHistory(rule=_one_with_usage(session, _view(rule), now), versions=versions)


def list_versions(session: Session, rule_id: uuid.UUID) -> tuple[RuleVersionView, ...]:
    """Every version of the rule, newest first. Raises RuleNotFound."""
    return rule_history(session, rule_id).versions


def version_fields(version: RuleVersion) -> dict[str, Any]:
    return {name: getattr(version, name) for name in VERSIONED_FIELDS}
