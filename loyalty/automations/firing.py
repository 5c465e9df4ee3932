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
together, and the next pass fires them again.

The actions themselves (grants, coupons, benefits, the automation.fired event) and the
automation's budget are ``actions``."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from loyalty.automations import actions, bulk, triggers
from loyalty.automations.models import (
    ActionType,
    Automation,
    AutomationFiring,
    AutomationVersion,
)
from loyalty.automations.services import active_versions, evaluated
from loyalty.db import transaction, utcnow
from loyalty.experiments import exposure
from loyalty.experiments.models import ExposureSource
from loyalty.members.models import Member, MemberStatus
from loyalty.tiers.services import program_tiers

BATCH = 1000


@dataclass
class FiringSummary:
    """What a pass fired: firings per automation (public id), and what they granted."""

    fired: dict[uuid.UUID, int] = field(default_factory=dict)
    points_granted: int = 0
    coupons_granted: int = 0
    benefits_granted: int = 0

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


def _in_database(session: Session, automation: Automation, version: AutomationVersion) -> bool:
    """Whether the version fires in one statement (``bulk``): on PostgreSQL, when its only
    action is the webhook and no experiment splits its members (their arms are hashed
    here, in Python); grants write each member's ledger, in batches below."""
    only_webhook = [action["type"] for action in version.actions] == [ActionType.WEBHOOK]
    return (
        only_webhook
        and session.get_bind().dialect.name == "postgresql"
        and exposure.automation_experiment(session, str(automation.public_id)) is None
    )


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
    if _in_database(session, automation, version):
        with transaction(session):
            return bulk.fire_in_database(session, automation, version, spec, now)
    # The candidate query runs once (seconds over a million members); re-running it per
    # batch would cost that again for every thousand members fired.
    with transaction(session):
        candidates = session.execute(triggers.candidates(spec, now)).all()
    fired = 0
    for start in range(0, len(candidates), batch_size):
        with transaction(session):
            fired += fire_batch(
                session,
                automation,
                version,
                spec,
                candidates[start : start + batch_size],
                now,
                summary,
            )
    return fired


def _under_experiment(
    session: Session,
    automation: Automation,
    members: Sequence[Any],
    rows: Sequence[Any],
    now: dt.datetime,
) -> Sequence[Any]:
    """The rows of the members the automation applies to under its live experiment, if it
    has one (see ``loyalty.experiments.exposure``): this evaluation is the exposure of the
    members it exposes, recorded whether their arm fires or not."""
    experiment = exposure.automation_experiment(session, str(automation.public_id))
    if experiment is None or not rows:
        return rows
    defined = program_tiers(session)
    facts = []
    for member in members:
        tier = defined.of(member.tier_id)
        facts.append(
            exposure.MemberFacts(
                member.id, member.external_id, member.enrolled_at, tier.code if tier else None
            )
        )
    placements = exposure.place_many(session, experiment, facts, now)
    exposure.record(session, list(placements.items()), ExposureSource.AUTOMATION, now)
    return [row for row in rows if placements[row.member_id].arm.applies]


def fire_batch(
    session: Session,
    automation: Automation,
    version: AutomationVersion,
    spec: triggers.Evaluated,
    rows: Sequence[Any],
    now: dt.datetime,
    summary: FiringSummary,
) -> int:
    """Fire `version` for the candidate rows (of ``triggers.candidates``) in the caller's
    transaction: their firings, then the actions for the ones this call inserted. Returns
    how many fired."""
    # A member closed or suspended since the query is left out.
    members = session.execute(
        sa.select(Member.id, Member.external_id, Member.enrolled_at, Member.tier_id).where(
            Member.id.in_([row.member_id for row in rows]),
            Member.status == MemberStatus.ACTIVE.value,
        )
    ).all()
    still_active = {member.id for member in members}
    rows = _under_experiment(
        session, automation, members, [row for row in rows if row.member_id in still_active], now
    )
    if not rows:
        return 0
    by_member = {
        row.member_id: triggers.details(spec.kind, spec.trigger, row, now, spec.zone)
        for row in rows
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
        .on_conflict_do_nothing(index_elements=["automation_id", "member_id", "window_start"])
        .returning(AutomationFiring.id, AutomationFiring.public_id, AutomationFiring.member_id)
    ).all()
    firings = sorted(
        actions.Firing(member_id, public_id, row_id) for row_id, public_id, member_id in inserted
    )
    granted = actions.act(session, automation, version, firings, by_member, now)
    summary.points_granted += granted.points
    summary.coupons_granted += granted.coupons
    summary.benefits_granted += granted.benefits
    return len(firings)
