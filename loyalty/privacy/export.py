"""Exporting everything the program holds about one member, as one JSON-ready document."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.automations.models import Automation, AutomationFiring, AutomationVersion
from loyalty.db import transaction, utcnow
from loyalty.events.models import MemberEvent
from loyalty.experiments.models import Experiment, ExperimentArm, ExperimentAssignment
from loyalty.ledger.models import LedgerTransaction, PointLot, Redemption
from loyalty.ledger.queries import movement
from loyalty.members.lookup import external_id_of, find_member, with_merged
from loyalty.members.models import Member
from loyalty.membership.services import Consent, consent_of
from loyalty.orders.models import Order, QuotedCart, Refund
from loyalty.rewards.models import Reward, RewardRedemption
from loyalty.settlement.services import settled_balance
from loyalty.tiers.models import BenefitGrant, Tier, TierChange

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class MemberExport:
    """Everything held about one member, each section oldest first."""

    exported_at: dt.datetime
    profile: Record
    consent: dict[str, Consent]
    balance: Record
    lots: tuple[Record, ...]
    transactions: tuple[Record, ...]
    orders: tuple[Record, ...]
    quoted_carts: tuple[Record, ...]
    events: tuple[Record, ...]
    redemptions: tuple[Record, ...]
    reward_redemptions: tuple[Record, ...]
    benefit_grants: tuple[Record, ...]
    tier_history: tuple[Record, ...]
    experiment_assignments: tuple[Record, ...]
    automation_firings: tuple[Record, ...]


def export(
    session: Session, external_id: str, actor: str | None, now: dt.datetime | None = None
) -> MemberExport:
    """Everything held about the member `external_id`, settled as of `now`; the export is
    audited (it hands out personal data). Returns the document. Raises MemberNotFound."""
    now = now or utcnow()
    with transaction(session):
        member = find_member(session, external_id)
        balance = settled_balance(session, member, now)
        document = MemberExport(
            exported_at=now,
            profile=_profile(session, member),
            consent=consent_of(member),
            balance={
                "available": balance.available,
                "pending": balance.pending,
                "held": balance.held,
                "last_activity_at": balance.last_activity_at,
            },
            lots=_lots(session, member.id),
            transactions=_transactions(session, member.id),
            orders=_orders(session, member.id),
            quoted_carts=_quoted_carts(session, member.id),
            events=_events(session, member.id),
            redemptions=_redemptions(session, member.id),
            reward_redemptions=_reward_redemptions(session, member.id),
            benefit_grants=_benefit_grants(session, member.id),
            tier_history=_tier_history(session, member.id),
            experiment_assignments=_assignments(session, member.id),
            automation_firings=_firings(session, member.id),
        )
        audit.record(session, actor, "member.export", "member", external_id, None, None, now)
    return document


def _profile(session: Session, member: Member) -> Record:
    tier = session.get(Tier, member.tier_id) if member.tier_id is not None else None
    return {
        "external_id": member.external_id,
        "status": member.status,
        "email": member.email,
        "name": member.name,
        "birthday": member.birthday,
        "metadata": dict(member.metadata_ or {}),
        "referred_by": (
            external_id_of(session, member.referred_by_id) if member.referred_by_id else None
        ),
        "tier": tier.code if tier is not None else None,
        "tier_retained_until": member.tier_retained_until,
        "enrolled_at": member.enrolled_at,
        "updated_at": member.updated_at,
        "erased_at": member.erased_at,
    }


def _lots(session: Session, member_id: int) -> tuple[Record, ...]:
    lots = session.execute(
        sa.select(PointLot).where(PointLot.member_id == member_id).order_by(PointLot.id)
    ).scalars()
    return tuple(
        {
            "points": lot.points,
            "remaining": lot.remaining,
            "state": lot.state,
            "available_at": lot.available_at,
            "expires_at": lot.expires_at,
            "created_at": lot.created_at,
        }
        for lot in lots
    )


def _transactions(session: Session, member_id: int) -> tuple[Record, ...]:
    found = session.execute(
        sa.select(LedgerTransaction)
        .where(LedgerTransaction.member_id.in_(with_merged(member_id)))
        .order_by(LedgerTransaction.id)
    ).scalars()
    return tuple(
        {
            "public_id": moved.public_id,
            "kind": moved.kind,
            "points": moved.points,
            "effective_at": moved.effective_at,
            "created_at": moved.created_at,
            "reference": moved.reference,
            "reason": moved.reason,
            "order_id": moved.order_id,
            "event_id": moved.event_id,
            "breakdown": list(moved.breakdown),
            "entries": [
                {"account": entry.account, "amount": entry.amount} for entry in moved.entries
            ],
        }
        for moved in map(movement, found)
    )


def _orders(session: Session, member_id: int) -> tuple[Record, ...]:
    orders = list(
        session.execute(
            sa.select(Order).where(Order.member_id == member_id).order_by(Order.id)
        ).scalars()
    )
    refunds: dict[int, list[Record]] = {order.id: [] for order in orders}
    for refund in session.execute(
        sa.select(Refund).where(Refund.order_pk.in_(list(refunds))).order_by(Refund.id)
    ).scalars():
        refunds[refund.order_pk].append(
            {
                "refund_id": refund.refund_id,
                "amount": refund.amount,
                "points_reversed": refund.points_reversed,
                "points_restored": refund.points_restored,
                "created_at": refund.created_at,
            }
        )
    return tuple(
        {
            "order_id": order.order_id,
            "currency": order.currency,
            "subtotal": order.subtotal,
            "discount": order.discount,
            "total": order.total,
            "redeemed_points": order.redeemed_points,
            "points_earned": order.points_earned,
            "lines": order.lines,
            "breakdown": order.breakdown,
            "placed_at": order.placed_at,
            "refunded_amount": order.refunded_amount,
            "points_reversed": order.points_reversed,
            "points_restored": order.points_restored,
            "cart_id": order.cart_id,
            "refunds": refunds[order.id],
        }
        for order in orders
    )


def _quoted_carts(session: Session, member_id: int) -> tuple[Record, ...]:
    carts = session.execute(
        sa.select(QuotedCart).where(QuotedCart.member_id == member_id).order_by(QuotedCart.id)
    ).scalars()
    return tuple(
        {
            "cart_id": cart.cart_id,
            "first_quoted_at": cart.first_quoted_at,
            "quoted_at": cart.quoted_at,
            "amount": cart.amount,
            "currency": cart.currency,
            "points_to_earn": cart.points_to_earn,
            "items": cart.items,
        }
        for cart in carts
    )


def _events(session: Session, member_id: int) -> tuple[Record, ...]:
    events = session.execute(
        sa.select(MemberEvent).where(MemberEvent.member_id == member_id).order_by(MemberEvent.id)
    ).scalars()
    return tuple(
        {
            "event_id": event.event_id,
            "type": event.type,
            "occurred_at": event.occurred_at,
            "attributes": event.attributes,
            "points_earned": event.points_earned,
        }
        for event in events
    )


def _redemptions(session: Session, member_id: int) -> tuple[Record, ...]:
    holds = session.execute(
        sa.select(Redemption).where(Redemption.member_id == member_id).order_by(Redemption.id)
    ).scalars()
    return tuple(
        {
            "redemption_id": hold.public_id,
            "points": hold.points,
            "value": hold.value,
            "currency": hold.currency,
            "status": hold.status,
            "order_id": hold.order_ref,
            "expires_at": hold.expires_at,
            "created_at": hold.created_at,
            "captured_at": hold.captured_at,
            "released_at": hold.released_at,
        }
        for hold in holds
    )


def _reward_redemptions(session: Session, member_id: int) -> tuple[Record, ...]:
    rows = session.execute(
        sa.select(RewardRedemption, Reward.public_id, Reward.name)
        .join(Reward, Reward.id == RewardRedemption.reward_id)
        .where(RewardRedemption.member_id == member_id)
        .order_by(RewardRedemption.id)
    )
    return tuple(
        {
            "id": held.public_id,
            "reward_id": reward_id,
            "reward_name": name,
            "points": held.points,
            "code": held.code,
            "created_at": held.created_at,
            "expires_at": held.expires_at,
        }
        for held, reward_id, name in rows
    )


def _benefit_grants(session: Session, member_id: int) -> tuple[Record, ...]:
    grants = session.execute(
        sa.select(BenefitGrant).where(BenefitGrant.member_id == member_id).order_by(BenefitGrant.id)
    ).scalars()
    return tuple(
        {
            "code": grant.code,
            "params": grant.params,
            "reason": grant.reason,
            "starts_at": grant.starts_at,
            "ends_at": grant.ends_at,
            "created_at": grant.created_at,
        }
        for grant in grants
    )


def _tier_history(session: Session, member_id: int) -> tuple[Record, ...]:
    changes = session.execute(
        sa.select(TierChange).where(TierChange.member_id == member_id).order_by(TierChange.id)
    ).scalars()
    return tuple(
        {
            "from_tier": change.from_tier,
            "to_tier": change.to_tier,
            "reason": change.reason,
            "qualifying_points": change.qualifying_points,
            "changed_at": change.changed_at,
        }
        for change in changes
    )


def _assignments(session: Session, member_id: int) -> tuple[Record, ...]:
    rows = session.execute(
        sa.select(ExperimentAssignment, Experiment.key, Experiment.name, ExperimentArm.key)
        .join(Experiment, Experiment.id == ExperimentAssignment.experiment_id)
        .join(ExperimentArm, ExperimentArm.id == ExperimentAssignment.arm_id)
        .where(ExperimentAssignment.member_id == member_id)
        .order_by(ExperimentAssignment.id)
    )
    return tuple(
        {
            "experiment": key,
            "experiment_name": name,
            "arm": arm,
            "first_exposed_at": assignment.first_exposed_at,
            "exposure_source": assignment.exposure_source,
        }
        for assignment, key, name, arm in rows
    )


def _firings(session: Session, member_id: int) -> tuple[Record, ...]:
    rows = session.execute(
        sa.select(AutomationFiring, Automation.public_id, AutomationVersion.name)
        .join(Automation, Automation.id == AutomationFiring.automation_id)
        .join(
            AutomationVersion,
            sa.and_(
                AutomationVersion.automation_id == AutomationFiring.automation_id,
                AutomationVersion.version == AutomationFiring.version,
            ),
        )
        .where(AutomationFiring.member_id == member_id)
        .order_by(AutomationFiring.id)
    )
    return tuple(
        {
            "id": firing.public_id,
            "automation_id": automation_id,
            "automation_name": name,
            "version": firing.version,
            "fired_at": firing.fired_at,
            "details": firing.details,
            "points_granted": firing.points_granted,
        }
        for firing, automation_id, name in rows
    )
