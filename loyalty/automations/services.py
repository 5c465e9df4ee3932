"""Managing automations (versioned like earning rules, every change audited) and asking
whether one would fire for a member now, and why.

Admin writes take typed commands (``AutomationDefinition`` to create, ``AutomationChanges``
to change) and every service answers with frozen views built in its transaction."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.automations import triggers
from loyalty.automations.definitions import (
    SEGMENT_KINDS,
    VERSIONED_FIELDS,
    AutomationChanges,
    AutomationDefinition,
    check_definition,
)
from loyalty.automations.exceptions import AutomationNotFound, RuleNotGrantable
from loyalty.automations.models import (
    ActionType,
    Automation,
    AutomationBudgetUsage,
    AutomationFiring,
    AutomationVersion,
    TriggerKind,
)
from loyalty.db import transaction, utcnow
from loyalty.errors import ValidationFailed
from loyalty.members.lookup import find_member
from loyalty.members.models import Member, MemberStatus
from loyalty.members.segments import check_segment_keys
from loyalty.program import config
from loyalty.rewards.models import Reward
from loyalty.rules import budgets, policy
from loyalty.rules.models import EarningRule, RuleKind

SEGMENTS_FIELD = "conditions.segments"
# An automation's budget is counted like a rule's, in a usage row per automation and period.
BUDGETS = budgets.Counter(AutomationBudgetUsage, "automation_id")


@dataclass(frozen=True, slots=True)
class AutomationVersionView:
    """One version of an automation, with the automation's id."""

    automation_id: uuid.UUID  # the automation's public id
    version: int
    name: str
    active: bool
    trigger: Mapping[str, Any]
    conditions: Mapping[str, Any]
    actions: tuple[Mapping[str, Any], ...]
    dedup_days: int | None
    budget: Mapping[str, Any] | None
    created_at: dt.datetime
    actor: str | None


@dataclass(frozen=True, slots=True)
class AutomationView:
    """An automation at its current version, with its budget's usage in the current period
    (None without a budget)."""

    public_id: uuid.UUID
    active: bool
    created_at: dt.datetime
    current: AutomationVersionView
    budget_usage: budgets.BudgetUsageView | None = None


def _version_view(automation: Automation, version: AutomationVersion) -> AutomationVersionView:
    return AutomationVersionView(
        automation_id=automation.public_id,
        version=version.version,
        name=version.name,
        active=version.active,
        trigger=dict(version.trigger),
        conditions=dict(version.conditions),
        actions=tuple(dict(action) for action in version.actions),
        dedup_days=version.dedup_days,
        budget=dict(version.budget) if version.budget else None,
        created_at=version.created_at,
        actor=version.actor,
    )


def _view(automation: Automation, current: AutomationVersion | None = None) -> AutomationView:
    return AutomationView(
        public_id=automation.public_id,
        active=automation.active,
        created_at=automation.created_at,
        current=_version_view(automation, current or automation.current),
    )


def _with_usage(
    session: Session, found: Sequence[tuple[Automation, AutomationView]], now: dt.datetime
) -> list[AutomationView]:
    """The views with their budgets' usage in the period `now` falls in (one query; the
    usage of a period counts across versions)."""
    by_row = {
        automation.id: policy.Budget.from_fields(view.current.budget)
        for automation, view in found
        if view.current.budget
    }
    if not by_row:
        return [view for _, view in found]
    usage = budgets.usage(session, by_row, config.current(session).settings, now, BUDGETS)
    return [
        dataclasses.replace(view, budget_usage=usage[automation.id])
        if automation.id in usage
        else view
        for automation, view in found
    ]


def _find(session: Session, automation_id: uuid.UUID, *, lock: bool = False) -> Automation:
    stmt = sa.select(Automation).where(Automation.public_id == automation_id)
    if lock:
        # OF: the current version is outer-joined, and PostgreSQL locks no nullable side.
        stmt = stmt.with_for_update(of=Automation).execution_options(populate_existing=True)
    automation = session.execute(stmt).unique().scalar_one_or_none()
    if automation is None:
        raise AutomationNotFound(f"No automation with id {automation_id}.")
    return automation


def _check_references(session: Session, fields: Mapping[str, Any]) -> None:
    """Raise UnknownSegment for a segment key (a condition's or the trigger's) that is no
    live saved segment's, ValidationFailed for a trigger's reward_id that is no reward's or
    a grant_coupon's that is no active reward's, and RuleNotGrantable for a grant through
    anything but an active bonus rule."""
    check_segment_keys(session, fields["conditions"].get("segments") or (), SEGMENTS_FIELD)
    if fields["trigger"]["kind"] in SEGMENT_KINDS:
        check_segment_keys(session, [fields["trigger"]["segment"]], "trigger.segment")
    reward_id = fields["trigger"].get("reward_id")
    if reward_id is not None and not session.scalar(
        sa.select(sa.exists().where(Reward.public_id == uuid.UUID(reward_id)))
    ):
        raise ValidationFailed({"trigger.reward_id": ["No reward with this id."]})
    for position, action in enumerate(fields["actions"]):
        if action["type"] == ActionType.GRANT_COUPON and not session.scalar(
            sa.select(
                sa.exists().where(
                    Reward.public_id == uuid.UUID(action["reward_id"]), Reward.active.is_(True)
                )
            )
        ):
            raise ValidationFailed({f"actions.{position}.reward_id": ["No active reward."]})
        if action["type"] != ActionType.GRANT_POINTS:
            continue
        try:
            rule_id = uuid.UUID(str(action["rule_id"]))
        except ValueError:
            rule_id = None
        rule = (
            session.execute(sa.select(EarningRule).where(EarningRule.public_id == rule_id))
            .unique()
            .scalar_one_or_none()
            if rule_id
            else None
        )
        if rule is None or not rule.active or rule.kind != RuleKind.BONUS:
            raise RuleNotGrantable(
                {f"actions.{position}.rule_id": ["Not an active earning rule of kind bonus."]},
                "Points are granted through an active bonus rule, so they are explained in the "
                "history and counted in the rule's budget.",
            )


def _new_version(
    session: Session, automation: Automation, fields: Mapping[str, Any], actor: str | None
) -> AutomationVersion:
    previous = session.execute(
        sa.select(AutomationVersion).where(
            AutomationVersion.automation_id == automation.id,
            AutomationVersion.version == automation.current_version - 1,
        )
    ).scalar_one_or_none()
    version = AutomationVersion(
        automation_id=automation.id,
        version=automation.current_version,
        actor=actor,
        **{name: fields[name] for name in VERSIONED_FIELDS},
    )
    session.add(version)
    session.flush()
    session.refresh(automation)
    if previous is None:
        action = "automation.create"
    elif previous.active and not version.active:
        action = "automation.deactivate"
    else:
        action = "automation.update"
    audit.record(
        session,
        actor,
        action,
        "automation",
        automation.public_id,
        audit.snapshot(previous) if previous else None,
        audit.snapshot(version),
    )
    return version


def create_automation(
    session: Session,
    definition: AutomationDefinition,
    actor: str | None,
    now: dt.datetime | None = None,
) -> AutomationView:
    """Create an automation at version 1 and return it. Raises ValidationFailed for an
    invalid definition, UnknownSegment for a segment key that is no live saved segment's,
    RuleNotGrantable for a grant through anything but an active bonus rule."""
    fields = definition.versioned()
    check_definition(fields)
    now = now or utcnow()
    with transaction(session):
        _check_references(session, fields)
        automation = Automation(
            current_version=1, active=definition.active, created_at=now, updated_at=now
        )
        session.add(automation)
        session.flush()
        view = _view(automation, _new_version(session, automation, fields, actor))
        return _with_usage(session, [(automation, view)], now)[0]


def update_automation(
    session: Session,
    automation_id: uuid.UUID,
    changes: AutomationChanges,
    actor: str | None,
    now: dt.datetime | None = None,
) -> AutomationView:
    """Apply `changes` as a new version and return the automation at it (with its budget's
    usage as of `now`). Firings keep counting across versions (a new version does not fire
    again for whom it fired), and so does a budget's usage in its period.
    Raises AutomationNotFound, ValidationFailed, UnknownSegment, RuleNotGrantable."""
    now = now or utcnow()
    with transaction(session):
        automation = _find(session, automation_id, lock=True)
        current = automation.current
        fields = changes.merged_into({name: getattr(current, name) for name in VERSIONED_FIELDS})
        check_definition(fields)
        _check_references(session, fields)
        automation.current_version += 1
        automation.active = fields["active"]
        view = _view(automation, _new_version(session, automation, fields, actor))
        return _with_usage(session, [(automation, view)], now)[0]


def deactivate_automation(
    session: Session, automation_id: uuid.UUID, actor: str | None
) -> AutomationView:
    """Stop the automation from firing (as a new version) and return it (with its budget's
    usage now). Deactivating an inactive automation changes nothing. Raises
    AutomationNotFound."""
    automation = _find(session, automation_id)
    if not automation.active:
        return _with_usage(session, [(automation, _view(automation))], utcnow())[0]
    with transaction(session):
        automation = _find(session, automation_id, lock=True)
        fields = {name: getattr(automation.current, name) for name in VERSIONED_FIELDS}
        automation.current_version += 1
        automation.active = False
        version = _new_version(session, automation, {**fields, "active": False}, actor)
        return _with_usage(session, [(automation, _view(automation, version))], utcnow())[0]


def activate_automation(
    session: Session, automation_id: uuid.UUID, actor: str | None
) -> AutomationView:
    """Let an inactive automation fire again (as a new version, audited as an update, exactly
    as a change of `active` through the API) and return it; its rule and segments are checked
    again, as they may have gone since. Activating an active automation changes nothing.
    Raises AutomationNotFound, UnknownSegment, RuleNotGrantable."""
    automation = _find(session, automation_id)
    if automation.active:
        return get_automation(session, automation_id)
    return update_automation(session, automation_id, AutomationChanges(active=True), actor)


def get_automation(
    session: Session, automation_id: uuid.UUID, now: dt.datetime | None = None
) -> AutomationView:
    """The automation at its current version, with its budget's usage as of `now`. Raises
    AutomationNotFound."""
    automation = _find(session, automation_id)
    return _with_usage(session, [(automation, _view(automation))], now or utcnow())[0]


def list_automations(
    session: Session,
    *,
    active: bool | None,
    limit: int,
    after: int | None,
    now: dt.datetime | None = None,
) -> tuple[list[AutomationView], int | None]:
    """Automations newest first, one page, with their budgets' usage as of `now`; returns
    (automations, position of the next page or None)."""
    stmt = sa.select(Automation).order_by(Automation.id.desc()).limit(limit + 1)
    if active is not None:
        stmt = stmt.where(Automation.active.is_(active))
    if after is not None:
        stmt = stmt.where(Automation.id < after)
    found = list(session.execute(stmt).unique().scalars())
    next_position = found[limit - 1].id if len(found) > limit else None
    page = [(automation, _view(automation)) for automation in found[:limit]]
    return _with_usage(session, page, now or utcnow()), next_position


def list_versions(session: Session, automation_id: uuid.UUID) -> tuple[AutomationVersionView, ...]:
    """Every version of the automation, newest first. Raises AutomationNotFound."""
    automation = _find(session, automation_id)
    stmt = (
        sa.select(AutomationVersion)
        .where(AutomationVersion.automation_id == automation.id)
        .order_by(AutomationVersion.version.desc())
    )
    return tuple(_version_view(automation, v) for v in session.execute(stmt).scalars())


def evaluated(
    session: Session, automation: Automation, version: AutomationVersion
) -> triggers.Evaluated:
    """The version as the candidate queries take it."""
    return triggers.Evaluated(
        automation_id=automation.id,
        trigger=dict(version.trigger),
        conditions=dict(version.conditions),
        dedup_days=version.dedup_days,
        created_at=automation.created_at,
        tier_window_months=config.current(session).settings.tier_window_months,
        zone=config.current(session).settings.zone,
        marketing_only=[action["type"] for action in version.actions] == [ActionType.WEBHOOK],
    )


@dataclass(frozen=True, slots=True)
class Simulation:
    """Whether an automation would fire for a member now, and why (not)."""

    automation_id: uuid.UUID
    version: int
    external_id: str
    would_fire: bool
    # due | automation_inactive | member_inactive | not_due | condition_failed |
    # already_fired | within_dedup_window
    reason: str
    detail: str
    condition: str | None = None  # the first condition that failed
    window_start: dt.datetime | None = None
    trigger: Mapping[str, Any] | None = None  # the trigger's specifics, when due


def simulate(
    session: Session, automation_id: uuid.UUID, external_id: str, now: dt.datetime | None = None
) -> Simulation:
    """Whether the automation (its current version) would fire for the member now: the same
    candidate query as ``jobs run``, taken apart for one member to say which part holds it
    back. Writes nothing. Raises AutomationNotFound, MemberNotFound."""
    now = now or utcnow()
    automation = _find(session, automation_id)
    member = find_member(session, external_id)
    version = automation.current
    spec = evaluated(session, automation, version)

    def answer(would_fire: bool, reason: str, detail: str, **extra: Any) -> Simulation:
        return Simulation(
            automation.public_id, version.version, external_id, would_fire, reason, detail, **extra
        )

    if not automation.active:
        return answer(False, "automation_inactive", "The automation is not active.")
    if member.status != MemberStatus.ACTIVE:
        return answer(False, "member_inactive", f"The member is {member.status}.")
    if spec.marketing_only and not (member.marketing_email or member.marketing_sms):
        return answer(
            False,
            "no_marketing_consent",
            "Its only action is the webhook, and the member consented to no marketing.",
        )
    due = triggers.due_select(spec, now)
    row = session.execute(sa.select(due).where(due.c.member_id == member.id)).first()
    if row is None:
        return answer(False, "not_due", _not_due(spec))
    window_start = row.window_start
    if window_start.tzinfo is None:
        window_start = window_start.replace(tzinfo=dt.UTC)
    found = {
        "window_start": window_start,
        "trigger": {
            "kind": spec.kind.value,
            **triggers.details(spec.kind, spec.trigger, row, now, spec.zone),
        },
    }
    for name, clause in triggers.condition_clauses(spec.conditions, Member.id):
        holds = session.scalar(sa.select(sa.exists().where(Member.id == member.id).where(clause)))
        if not holds:
            return answer(
                False,
                "condition_failed",
                f"The member does not meet {name}.",
                condition=name,
                **found,
            )
    one = sa.select(due).where(due.c.member_id == member.id).subquery("due")
    fired = session.execute(
        sa.select(AutomationFiring.fired_at).where(
            AutomationFiring.automation_id == automation.id,
            AutomationFiring.member_id == member.id,
            AutomationFiring.window_start == sa.select(one.c.window_start).scalar_subquery(),
        )
    ).scalar_one_or_none()
    if fired is not None:
        return answer(
            False, "already_fired", f"It fired for this window at {fired.isoformat()}.", **found
        )
    if spec.dedup_days and session.scalar(
        sa.select(
            sa.exists().where(
                triggers.fired_within(automation.id, one, spec.dedup_days, now, spec.zone)
            )
        ).select_from(one)
    ):
        return answer(
            False,
            "within_dedup_window",
            f"It fired for this member within the last {spec.dedup_days} days.",
            **found,
        )
    return answer(True, "due", "It would fire at the next jobs run.", **found)


def _not_due(spec: triggers.Evaluated) -> str:
    trigger = spec.trigger
    return {
        TriggerKind.ENROLLED: f"Not enrolled {trigger.get('delay_days')} days ago yet, or "
        "enrolled before the automation was created.",
        TriggerKind.INACTIVE: f"No purchase, or one within the last {trigger.get('days')} days.",
        TriggerKind.POINTS_EXPIRING: "No available points expiring within "
        f"{trigger.get('within_days')} days.",
        TriggerKind.BIRTHDAY: "Not the member's birthday today (or no birthday on record).",
        TriggerKind.REPURCHASE_DUE: "No purchase yet, or the typical gap has not passed.",
        TriggerKind.SEGMENT_ENTERED: f"Not in segment {trigger.get('segment')!r}, or in it "
        "since before the automation was created.",
        TriggerKind.SEGMENT_LEFT: f"Has not left segment {trigger.get('segment')!r} since the "
        "automation was created, or is back in it.",
        TriggerKind.REWARD_AFFORDABLE: "The available balance covers no active, in-stock "
        "reward the member may redeem and has not, or it fired for each such reward already.",
        TriggerKind.TIER_AT_RISK: "No tier, its review is not within "
        f"{trigger.get('within_days')} days, or the qualifying points already keep it.",
        TriggerKind.CART_ABANDONED: "No cart quoted for the member since the automation was "
        f"created and last quoted {trigger.get('after_hours')} hours ago or more without an "
        "order naming it, or it fired for each such cart already.",
    }[spec.kind]


def active_versions(session: Session) -> list[tuple[Automation, AutomationVersion]]:
    """Every active automation with its current version, oldest first."""
    found = (
        session.execute(
            sa.select(Automation).where(Automation.active.is_(True)).order_by(Automation.id)
        )
        .unique()
        .scalars()
    )
    return [(automation, automation.current) for automation in found]


def grant_actions(actions: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The grant_points action among `actions`, if any."""
    return next((a for a in actions if a["type"] == ActionType.GRANT_POINTS), None)


@dataclass(frozen=True, slots=True)
class FiringCounts:
    """How many times an automation fired: in all, and since a moment."""

    total: int
    recent: int


@dataclass(frozen=True, slots=True)
class FiringView:
    """One firing of an automation for a member."""

    public_id: uuid.UUID
    external_id: str  # the member's
    version: int  # of the automation, that fired
    fired_at: dt.datetime
    window_start: dt.datetime
    points_granted: int


def firing_counts(
    session: Session, automation_ids: Sequence[uuid.UUID], since: dt.datetime
) -> dict[uuid.UUID, FiringCounts]:
    """Each automation's firings in all and at or after `since`, by its public id (zeros for
    one that never fired, or that does not exist). One grouped query, counted on the
    (automation, member, fired_at) index."""
    if not automation_ids:
        return {}
    recent = sa.func.coalesce(
        sa.func.sum(sa.case((AutomationFiring.fired_at >= since, 1), else_=0)), 0
    )
    stmt = (
        sa.select(Automation.public_id, sa.func.count(AutomationFiring.id), recent)
        .join(AutomationFiring, AutomationFiring.automation_id == Automation.id)
        .where(Automation.public_id.in_(automation_ids))
        .group_by(Automation.public_id)
    )
    found = {row[0]: FiringCounts(int(row[1]), int(row[2])) for row in session.execute(stmt)}
    return {each: found.get(each, FiringCounts(0, 0)) for each in automation_ids}


def recent_firings(
    session: Session, automation_id: uuid.UUID, *, limit: int, before: int | None
) -> tuple[list[FiringView], int | None]:
    """The automation's firings, latest first (in the order they were recorded), one page;
    returns (firings, position of the next page or None). Raises AutomationNotFound."""
    automation = _find(session, automation_id)
    stmt = (
        sa.select(
            AutomationFiring.id,
            AutomationFiring.public_id,
            Member.external_id,
            AutomationFiring.version,
            AutomationFiring.fired_at,
            AutomationFiring.window_start,
            AutomationFiring.points_granted,
        )
        .join(Member, Member.id == AutomationFiring.member_id)
        .where(AutomationFiring.automation_id == automation.id)
        .order_by(AutomationFiring.id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        stmt = stmt.where(AutomationFiring.id < before)
    rows = session.execute(stmt).all()
    next_position = rows[limit - 1].id if len(rows) > limit else None
    return [
        FiringView(
            public_id=row.public_id,
            external_id=row.external_id,
            version=row.version,
            fired_at=row.fired_at,
            window_start=row.window_start,
            points_granted=int(row.points_granted),
        )
        for row in rows[:limit]
    ], next_position
