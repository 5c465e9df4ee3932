"""Firing every active automation for every member it is due for, set-based: for each
automation, one candidate SELECT (``triggers.candidates``), then per batch of its rows one
multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` of the firings and the actions for
the rows that insert returned, in one transaction per batch. On PostgreSQL an automation
whose only action is the webhook fires in one statement instead (``bulk``), in one
transaction.

The unique key (automation, member, window start) is what makes a firing happen once: a
second worker evaluating the same automation at the same moment finds the first's rows on
the unique index (on PostgreSQL it waits for the first to commit, then inserts nothing), so
only one of them acts; a worker killed mid-batch rolls back its firings and their actions
together, and the next pass fires them again."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from loyalty.automations import bulk, triggers
from loyalty.automations.models import ActionType, Automation, AutomationFiring, AutomationVersion
from loyalty.automations.services import active_versions, evaluated, grant_actions
from loyalty.db import transaction, utcnow
from loyalty.ledger.models import MemberBalance
from loyalty.ledger.postings import lock_balance
from loyalty.members.models import Member, MemberStatus
from loyalty.program import config
from loyalty.rules import earning as rules
from loyalty.rules import policy
from loyalty.settlement.services import settle_member
from loyalty.tiers import services as tiers
from loyalty.tiers.models import Tier
from loyalty.webhooks import outbox

BATCH = 1000


@dataclass
class FiringSummary:
    """What a pass fired: firings per automation (public id), and points granted."""

    fired: dict[uuid.UUID, int] = field(default_factory=dict)
    points_granted: int = 0

    @property
    def total(self) -> int:
        return sum(self.fired.values())


def fire_due(
    session: Session, now: dt.datetime | None = None, batch_size: int = BATCH
) -> FiringSummary:
    """Fire every active automation for every member it is due for at `now` (see the
    README's "Automations"). Each batch is one transaction; running it again fires nothing
    new. Returns how many fired."""
    now = now or utcnow()
    summary = FiringSummary()
    with transaction(session):
        automations = active_versions(session)
    for automation, version in automations:
        summary.fired[automation.public_id] = _fire(
            session, automation, version, now, batch_size, summary
        )
    return summary


def _in_database(session: Session, version: AutomationVersion) -> bool:
    """Whether the version fires in one statement (``bulk``): on PostgreSQL, when its only
    action is the webhook; grants write each member's ledger, in batches below."""
    only_webhook = [action["type"] for action in version.actions] == [ActionType.WEBHOOK]
    return only_webhook and session.get_bind().dialect.name == "postgresql"


def _insert(session: Session) -> Any:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(AutomationFiring)


def _fire(
    session: Session,
    automation: Automation,
    version: AutomationVersion,
    now: dt.datetime,
    batch_size: int,
    summary: FiringSummary,
) -> int:
    spec = evaluated(session, automation, version)
    if _in_database(session, version):
        with transaction(session):
            return bulk.fire_in_database(session, automation, version, spec, now)
    # The candidate query runs once (seconds over a million members); re-running it per
    # batch would cost that again for every thousand members fired.
    with transaction(session):
        candidates = session.execute(triggers.candidates(spec, now)).all()
    fired = 0
    for start in range(0, len(candidates), batch_size):
        rows = candidates[start : start + batch_size]
        with transaction(session):
            # A member closed or suspended since the query is left out.
            still_active = set(
                session.scalars(
                    sa.select(Member.id).where(
                        Member.id.in_([row.member_id for row in rows]),
                        Member.status == MemberStatus.ACTIVE.value,
                    )
                )
            )
            rows = [row for row in rows if row.member_id in still_active]
            if not rows:
                continue
            by_member = {
                row.member_id: triggers.details(spec.kind, spec.trigger, row, now) for row in rows
            }
            values = [
                {
                    "public_id": uuid.uuid4(),
                    "automation_id": automation.id,
                    "version": version.version,
                    "member_id": row.member_id,
                    "window_start": row.window_start,
                    "fired_at": now,
                    "details": by_member[row.member_id],
                    "points_granted": 0,
                }
                for row in rows
            ]
            # Rows another worker inserted first (the same key) are skipped, and not acted on.
            inserted = session.execute(
                _insert(session)
                .values(values)
                .on_conflict_do_nothing(
                    index_elements=["automation_id", "member_id", "window_start"]
                )
                .returning(AutomationFiring.public_id, AutomationFiring.member_id)
            ).all()
            firings = sorted((member_id, public_id) for public_id, member_id in inserted)
            _act(session, automation, version, firings, by_member, now, summary)
            fired += len(firings)
    return fired


def _act(
    session: Session,
    automation: Automation,
    version: AutomationVersion,
    firings: Sequence[tuple[int, uuid.UUID]],
    details: Mapping[int, dict[str, Any]],
    now: dt.datetime,
    summary: FiringSummary,
) -> None:
    """The version's actions for the firings just inserted (member id, firing id), in
    member order: grants first (so the webhook shows the balance after them), then one
    automation.fired event each."""
    actions = {action["type"] for action in version.actions}
    granted: dict[int, int] = {}
    grant = grant_actions(version.actions)
    if grant is not None:
        for member_id, firing_id in firings:
            granted[member_id] = _grant(
                session, automation, version, grant, member_id, firing_id, now
            )
            summary.points_granted += granted[member_id]
    if ActionType.WEBHOOK not in actions:
        return
    members = {
        row.id: row
        for row in session.execute(
            sa.select(
                Member.id,
                Member.external_id,
                Member.email,
                Member.name,
                Tier.code.label("tier"),
                MemberBalance.available,
            )
            .join(MemberBalance, MemberBalance.member_id == Member.id)
            .outerjoin(Tier, Tier.id == Member.tier_id)
            .where(Member.id.in_([member_id for member_id, _ in firings]))
        )
    }
    outbox.emit_many(
        session,
        "automation.fired",
        (
            {
                "firing_id": str(firing_id),
                "automation": {
                    "id": str(automation.public_id),
                    "name": version.name,
                    "version": version.version,
                },
                "member": {
                    "member_id": members[member_id].external_id,
                    "email": members[member_id].email,
                    "name": members[member_id].name,
                    "tier": members[member_id].tier,
                    "available": int(members[member_id].available),
                },
                "trigger": {"kind": version.trigger["kind"], **details[member_id]},
                "points_granted": granted.get(member_id) if grant is not None else None,
                "fired_at": now.isoformat(),
            }
            for member_id, firing_id in firings
        ),
        now,
    )


def _grant(
    session: Session,
    automation: Automation,
    version: AutomationVersion,
    grant: Mapping[str, Any],
    member_id: int,
    firing_id: uuid.UUID,
    now: dt.datetime,
) -> int:
    """Award the grant through its bonus rule as an earn (explained in the history by the
    rule's breakdown, within the rule's caps and budget) and return the points given: 0
    when the rule is no longer active, or its caps or budget leave nothing."""
    active = [
        rule
        for rule in rules.active_rules(session, ("bonus",))
        if rule.policy.rule_id == str(grant["rule_id"])
    ]
    if not active:
        return 0
    rule = active[0]
    balance = lock_balance(session, member_id)
    settle_member(session, balance, now)
    member = session.get(Member, member_id)
    assert member is not None
    points = grant.get("points") or rule.policy.points
    context = policy.MemberContext(
        tier=tiers.member_tier_code(session, member),
        segments=rules.member_segments(session, member, [rule.policy]),
        remaining_caps=rules.remaining_caps(session, member.id, active, now),
    )
    earned, breakdown, reserved = rules.within_budgets(
        session,
        active,
        context,
        lambda ctx: policy.granted_points(rule.policy, points, ctx, now),
        now,
        reserve=True,
    )
    if not earned:
        return 0
    about = {"automation_id": str(automation.public_id), "automation_version": version.version}
    rules.award(
        session,
        member,
        balance,
        config.current(session).settings,
        (earned, breakdown),
        active,
        source=f"automation:{firing_id}",
        earned_at=now,
        now=now,
        pending=False,
        details=about,
        payload={**about, "firing_id": str(firing_id)},
        reserved=reserved,
    )
    tiers.review_member(session, member, now)
    session.execute(
        sa.update(AutomationFiring)
        .where(AutomationFiring.public_id == firing_id)
        .values(points_granted=earned)
    )
    return earned
