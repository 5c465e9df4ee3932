"""What the app and the console read about one member beyond the card: benefits, tier
history, and the console's page of everything at once."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.auth.member_tokens import LiveToken, live_tokens
from loyalty.db import utcnow
from loyalty.ledger.models import Redemption, RedemptionStatus
from loyalty.ledger.queries import LotView, Movement, live_lots_page
from loyalty.members.lookup import find_member
from loyalty.membership.services import MemberCard, card, history
from loyalty.pagination import Page
from loyalty.referrals.listing import ReferralView, referral_of, referrals_made
from loyalty.rewards.services import RedeemedReward, member_redemptions
from loyalty.rules.earning import member_facts, tier_benefits
from loyalty.settlement.services import settled_balance
from loyalty.tiers.benefits import Benefit, member_benefits
from loyalty.tiers.services import TierMove, member_tier_code, tier_history


def benefits(session: Session, external_id: str, now: dt.datetime | None = None) -> list[Benefit]:
    """The benefits the member holds now, from their tier (less what their arm of a live
    experiment withholds) and their own grants. Raises MemberNotFound."""
    now = now or utcnow()
    member = find_member(session, external_id)
    # Settled first: a tier whose retention ran out is reviewed before its benefits count.
    settled_balance(session, member, now)
    facts = member_facts(member, member_tier_code(session, member))
    # What an experiment's arm withholds from the member's tier (grants stay their own).
    withheld = {
        code
        for code, placement in tier_benefits(session, member, facts, now, None).items()
        if not placement.arm.applies
    }
    return [
        benefit
        for benefit in member_benefits(session, member, now)
        if benefit.source != "tier" or benefit.code not in withheld
    ]


def tier_changes(session: Session, external_id: str, limit: int = 50) -> list[TierMove]:
    """The member's tier changes, newest first. Raises MemberNotFound."""
    return tier_history(session, find_member(session, external_id).id, limit)


@dataclass(frozen=True, slots=True)
class HoldSummary:
    public_id: uuid.UUID
    points: int
    status: RedemptionStatus
    created_at: dt.datetime
    order_id: str | None  # the order it paid for (see Redemption.order_ref)


@dataclass(frozen=True, slots=True)
class MemberOverview:
    """Everything the console's member page shows."""

    card: MemberCard
    history: Page[Movement]
    tier_history: list[TierMove]
    holds: list[HoldSummary]
    reward_redemptions: list[RedeemedReward]
    lots: list[LotView]  # the live lots, soonest-expiring first (the first 50)
    tokens: list[LiveToken]  # the customer app's live member tokens
    referred_by: ReferralView | None  # the referral this member enrolled on
    referrals: list[ReferralView]  # the friends who enrolled on theirs (the latest 50)


def overview(session: Session, external_id: str, cursor: str | None) -> MemberOverview:
    """The member's card, a page of history (from `cursor`), tier changes, holds, reward
    redemptions, live lots, app tokens and referrals. Raises MemberNotFound, ValidationFailed
    for a bad cursor."""
    member_card = card(session, external_id)
    member_id = find_member(session, external_id).id
    holds = session.execute(
        sa.select(
            Redemption.public_id,
            Redemption.points,
            Redemption.status,
            Redemption.created_at,
            Redemption.order_ref,
        )
        .where(Redemption.member_id == member_id)
        .order_by(Redemption.id.desc())
        .limit(50)
    )
    return MemberOverview(
        card=member_card,
        history=history(session, external_id, 25, cursor),
        tier_history=tier_history(session, member_id, 50),
        holds=[
            HoldSummary(
                h.public_id, h.points, RedemptionStatus(h.status), h.created_at, h.order_ref
            )
            for h in holds
        ],
        reward_redemptions=member_redemptions(session, member_id),
        lots=live_lots_page(session, member_id, 50, None).items,
        tokens=live_tokens(session, member_id, utcnow()),
        referred_by=referral_of(session, member_id),
        referrals=referrals_made(session, external_id, 50, None).items,
    )
