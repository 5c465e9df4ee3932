"""Managing earning rules and turning them into what the pure policy computes with."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.db import transaction
from loyalty.errors import ValidationFailed
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


def check_definition(kind: RuleKind, fields: dict[str, Any]) -> None:
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
    session: Session, rule: EarningRule, fields: dict[str, Any], actor: str | None
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


def create_rule(session: Session, fields: dict[str, Any], actor: str | None) -> EarningRule:
    """Create a rule at version 1 and return it. Raises ValidationFailed for a definition
    its kind cannot use."""
    kind = RuleKind(fields["kind"])
    check_definition(kind, fields)
    with transaction(session):
        rule = EarningRule(kind=kind.value, current_version=1, active=fields["active"])
        session.add(rule)
        session.flush()
        _new_version(session, rule, fields, actor)
    return rule


def update_rule(
    session: Session, rule_id: uuid.UUID, changes: dict[str, Any], actor: str | None
) -> EarningRule:
    """Apply `changes` as a new version of the rule and return the rule.

    Raises RuleNotFound, or ValidationFailed when the merged definition is invalid or the
    kind would change.
    """
    if "kind" in changes:
        raise ValidationFailed({"kind": ["A rule's kind cannot change; create a new rule."]})
    with transaction(session):
        rule = _find(session, rule_id, lock=True)
        current = rule.current
        fields = {name: getattr(current, name) for name in VERSIONED_FIELDS}
        for name in ("config", "conditions", "caps"):
            if name in changes:
                fields[name] = {**fields[name], **changes.pop(name)}
        fields.update(changes)
        check_definition(RuleKind(rule.kind), fields)
        rule.current_version += 1
        rule.active = fields["active"]
        _new_version(session, rule, fields, actor)
    return rule


def deactivate_rule(session: Session, rule_id: uuid.UUID, actor: str | None) -> EarningRule:
    """Stop the rule from earning (as a new version, so history stays). Raises RuleNotFound."""
    rule = _find(session, rule_id)
    if not rule.active:
        return rule
    return update_rule(session, rule_id, {"active": False}, actor)


def get_rule(session: Session, rule_id: uuid.UUID) -> EarningRule:
    """The rule with its current version. Raises RuleNotFound."""
    return _find(session, rule_id)


def list_rules(
    session: Session, *, active: bool | None, kind: str | None, limit: int, after: int | None
) -> tuple[list[EarningRule], int | None]:
    """Rules newest first, one page; returns (rules, position of the next page or None)."""
    stmt = sa.select(EarningRule).order_by(EarningRule.id.desc()).limit(limit + 1)
    if active is not None:
        stmt = stmt.where(EarningRule.active.is_(active))
    if kind is not None:
        stmt = stmt.where(EarningRule.kind == kind)
    if after is not None:
        stmt = stmt.where(EarningRule.id < after)
    rules = list(session.execute(stmt).unique().scalars())
    return rules[:limit], rules[limit - 1].id if len(rules) > limit else None


def list_versions(session: Session, rule_id: uuid.UUID) -> list[RuleVersion]:
    """Every version of the rule, newest first. Raises RuleNotFound."""
    rule = _find(session, rule_id)
    stmt = (
        sa.select(RuleVersion)
        .where(RuleVersion.rule_id == rule.id)
        .order_by(RuleVersion.version.desc())
    )
    return list(session.execute(stmt).scalars())


def version_fields(version: RuleVersion) -> dict[str, Any]:
    return {name: getattr(version, name) for name in VERSIONED_FIELDS}
