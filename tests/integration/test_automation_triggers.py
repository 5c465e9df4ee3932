"""The automation triggers on saved segments, reward balances and tier retention: each due
exactly when the test's clock says, once per its documented dedup key, with its specifics in
the automation.fired event and in the simulator's answer."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from loyalty.automations import services
from loyalty.errors import ValidationFailed
from loyalty.insight import saved_segments as segments
from loyalty.insight.saved_segments import SegmentDefinition
from loyalty.insight.segment_filter import SegmentFilter
from loyalty.members.models import Member
from loyalty.members.segments import SegmentChange, UnknownSegment
from loyalty.membership import adjustments
from loyalty.rewards import services as rewards
from loyalty.rewards.definitions import RewardDefinition, RewardView, create_reward
from loyalty.rewards.models import RewardKind
from loyalty.tiers.models import Tier
from tests.factories import MemberFactory, OrderFactory, RuleFactory, TierFactory
from tests.integration.test_automations import DAY, T0, automation, fired, run


def vip(session: Any, external_id: str, value: bool) -> None:
    session.execute(
        sa.update(Member).where(Member.external_id == external_id).values(metadata_={"vip": value})
    )


@pytest.fixture
def vips(session: Any) -> None:
    """A saved segment "vips" of members whose metadata says vip; c1 is one, c2 not."""
    segments.create_segment(
        session,
        SegmentDefinition(key="vips", name="VIPs", filter=SegmentFilter(metadata={"vip": True})),
    )
    for external_id, value in (("c1", True), ("c2", False)):
        MemberFactory(external_id=external_id, now=T0 - 60 * DAY)
        vip(session, external_id, value)


# --- segment_entered / segment_left -------------------------------------------------------


def test_segment_entered_fires_for_members_who_entered_since_the_automation(session, vips):
    automation(session, {"kind": "segment_entered", "segment": "vips"})
    segments.recompute_members(session, T0)

    assert run(session, T0) == 1
    assert run(session, T0 + DAY) == 0
    [payload] = fired(session)
    assert payload["member"]["member_id"] == "c1"
    assert payload["trigger"] == {
        "kind": "segment_entered",
        "segment": "vips",
        "entered_at": T0.isoformat(),
    }

    vip(session, "c2", True)
    segments.recompute_members(session, T0 + 2 * DAY)

    assert run(session, T0 + 2 * DAY) == 1
    assert fired(session)[-1]["member"]["member_id"] == "c2"


def test_members_in_the_segment_before_the_automation_existed_are_not_due(session, vips):
    segments.recompute_members(session, T0 - 40 * DAY)
    automation(session, {"kind": "segment_entered", "segment": "vips"})

    assert run(session, T0) == 0


def test_a_refresh_after_the_clock_is_not_seen_yet(session, vips):
    automation(session, {"kind": "segment_entered", "segment": "vips"})
    segments.recompute_members(session, T0)

    assert run(session, T0 - dt.timedelta(seconds=1)) == 0
    assert run(session, T0) == 1


def test_entering_again_after_leaving_fires_again(session, vips):
    automation(session, {"kind": "segment_entered", "segment": "vips"})
    segments.recompute_members(session, T0)
    vip(session, "c1", False)
    segments.recompute_members(session, T0 + DAY)
    vip(session, "c1", True)
    segments.recompute_members(session, T0 + 2 * DAY)

    assert run(session, T0 + 2 * DAY) == 1
    assert fired(session)[-1]["trigger"]["entered_at"] == (T0 + 2 * DAY).isoformat()


def test_refreshes_log_who_entered_and_left(session, vips):
    segments.recompute_members(session, T0)
    vip(session, "c1", False)
    segments.recompute_members(session, T0 + DAY)

    logged = session.execute(
        sa.select(SegmentChange.change, SegmentChange.changed_at).order_by(SegmentChange.id)
    ).all()
    assert [(change, at.replace(tzinfo=dt.UTC)) for change, at in logged] == [
        ("entered", T0),
        ("left", T0 + DAY),
    ]


def test_segment_left_fires_once_per_exit_for_members_still_out(session, vips):
    automation(session, {"kind": "segment_left", "segment": "vips"})
    segments.recompute_members(session, T0)
    assert run(session, T0) == 0

    vip(session, "c1", False)
    segments.recompute_members(session, T0 + DAY)

    assert run(session, T0 + DAY) == 1
    assert run(session, T0 + 2 * DAY) == 0
    [payload] = fired(session)
    assert payload["member"]["member_id"] == "c1"
    assert payload["trigger"] == {
        "kind": "segment_left",
        "segment": "vips",
        "left_at": (T0 + DAY).isoformat(),
    }

    vip(session, "c1", True)
    segments.recompute_members(session, T0 + 3 * DAY)
    assert run(session, T0 + 3 * DAY) == 0  # back in: not left

    vip(session, "c1", False)
    segments.recompute_members(session, T0 + 4 * DAY)
    assert run(session, T0 + 4 * DAY) == 1
    assert fired(session)[-1]["trigger"]["left_at"] == (T0 + 4 * DAY).isoformat()


def test_leaving_before_the_automation_existed_is_not_due(session, vips):
    segments.recompute_members(session, T0 - 50 * DAY)
    vip(session, "c1", False)
    segments.recompute_members(session, T0 - 40 * DAY)
    automation(session, {"kind": "segment_left", "segment": "vips"})

    assert run(session, T0) == 0


def test_a_segment_trigger_names_a_live_saved_segment(session, vips):
    with pytest.raises(ValidationFailed) as missing:
        automation(session, {"kind": "segment_entered"})
    with pytest.raises(UnknownSegment) as unknown:
        automation(session, {"kind": "segment_left", "segment": "nobody"})

    assert "trigger.segment" in missing.value.extra["errors"]
    assert "trigger.segment" in unknown.value.extra["errors"]


def test_simulate_explains_a_segment_trigger(session, vips):
    entered = automation(session, {"kind": "segment_entered", "segment": "vips"})

    before = services.simulate(session, entered.public_id, "c1", now=T0)
    segments.recompute_members(session, T0)
    after = services.simulate(session, entered.public_id, "c1", now=T0)

    assert (before.reason, after.reason) == ("not_due", "due")
    assert "vips" in before.detail
    assert after.trigger == {
        "kind": "segment_entered",
        "segment": "vips",
        "entered_at": T0.isoformat(),
    }


# --- reward_affordable -------------------------------------------------------------------


def reward(session: Any, name: str, cost: int, **fields: Any) -> RewardView:
    return create_reward(
        session, RewardDefinition(name=name, kind=RewardKind.PRODUCT, cost_points=cost, **fields)
    )


def test_reward_affordable_fires_once_per_reward_the_balance_newly_covers(session):
    automation(session, {"kind": "reward_affordable"})
    pen, mug = reward(session, "Pen", 50), reward(session, "Mug", 150)
    MemberFactory(external_id="c1", now=T0 - DAY)
    MemberFactory(external_id="c2", now=T0 - DAY)
    adjustments.adjust(session, "c1", 100, "test", "ops", now=T0)
    adjustments.adjust(session, "c2", 10, "test", "ops", now=T0)

    assert run(session, T0) == 1
    assert run(session, T0 + DAY) == 0
    adjustments.adjust(session, "c1", 100, "test", "ops", now=T0 + DAY)
    assert run(session, T0 + 2 * DAY) == 1
    assert run(session, T0 + 3 * DAY) == 0

    first, second = fired(session)
    assert first["member"]["member_id"] == "c1"
    assert first["trigger"] == {
        "kind": "reward_affordable",
        "reward": {"id": str(pen.public_id), "name": "Pen", "cost_points": 50},
    }
    assert second["trigger"]["reward"]["id"] == str(mug.public_id)
    assert second["member"]["available"] == 200


def test_a_reward_redeemed_out_of_stock_closed_or_above_the_tier_is_not_due(session):
    automation(session, {"kind": "reward_affordable"})
    pen = reward(session, "Pen", 50)
    reward(session, "Sold out", 10, stock=0)
    reward(session, "Closed", 10, active=False)
    reward(session, "Later", 10, starts_at=T0 + DAY)
    TierFactory(gold=True)
    reward(session, "Gold only", 10, min_tier="gold")
    MemberFactory(external_id="c1", now=T0 - DAY)
    adjustments.adjust(session, "c1", 100, "test", "ops", now=T0)
    rewards.redeem(session, "c1", pen.public_id, now=T0)

    assert run(session, T0) == 0
    assert run(session, T0 + DAY) == 1
    assert run(session, T0 + 2 * DAY) == 0
    assert fired(session)[0]["trigger"]["reward"]["name"] == "Later"


def test_reward_affordable_can_name_one_reward(session):
    reward(session, "Pen", 50)
    mug = reward(session, "Mug", 80)
    automation(session, {"kind": "reward_affordable", "reward_id": str(mug.public_id)})
    MemberFactory(external_id="c1", now=T0 - DAY)
    adjustments.adjust(session, "c1", 60, "test", "ops", now=T0)

    assert run(session, T0) == 0
    adjustments.adjust(session, "c1", 20, "test", "ops", now=T0)
    assert run(session, T0) == 1
    assert fired(session)[0]["trigger"]["reward"]["name"] == "Mug"


def test_a_reward_trigger_names_an_existing_reward(session):
    with pytest.raises(ValidationFailed) as unknown:
        automation(
            session,
            {"kind": "reward_affordable", "reward_id": "00000000-0000-0000-0000-000000000000"},
        )

    assert "trigger.reward_id" in unknown.value.extra["errors"]


def test_simulate_explains_a_reward_trigger(session):
    pen = reward(session, "Pen", 50)
    affordable = automation(session, {"kind": "reward_affordable"})
    MemberFactory(external_id="c1", now=T0 - DAY)

    before = services.simulate(session, affordable.public_id, "c1", now=T0)
    adjustments.adjust(session, "c1", 50, "test", "ops", now=T0)
    after = services.simulate(session, affordable.public_id, "c1", now=T0)

    assert (before.reason, after.reason) == ("not_due", "due")
    assert after.trigger == {
        "kind": "reward_affordable",
        "reward": {"id": str(pen.public_id), "name": "Pen", "cost_points": 50},
    }


# --- tier_at_risk -------------------------------------------------------------------------

REVIEW = T0 + 10 * DAY


@pytest.fixture
def silver(session: Any) -> None:
    """Silver needs 100 qualifying points; c1 has 60, c2 150, both silver until REVIEW."""
    TierFactory(silver=True)
    RuleFactory()  # 1 point per 1.00
    for external_id, worth in (("c1", 60), ("c2", 150)):
        MemberFactory(external_id=external_id, now=T0 - 60 * DAY)
        OrderFactory(
            order_id=f"o-{external_id}", member_id=external_id, worth=worth, now=T0 - 30 * DAY
        )
    session.execute(
        sa.update(Member).values(
            tier_id=sa.select(Tier.id).where(Tier.code == "silver").scalar_subquery(),
            tier_retained_until=REVIEW,
        )
    )


def test_tier_at_risk_fires_within_n_days_of_the_review_with_the_points_needed(session, silver):
    automation(session, {"kind": "tier_at_risk", "within_days": 14})

    assert run(session, REVIEW - 15 * DAY) == 0
    assert run(session, REVIEW - 14 * DAY) == 1
    assert run(session, REVIEW - DAY) == 0
    assert run(session, REVIEW) == 0

    [payload] = fired(session)
    assert payload["member"]["member_id"] == "c1"
    assert payload["trigger"] == {
        "kind": "tier_at_risk",
        "tier": "silver",
        "review_at": REVIEW.isoformat(),
        "qualifying_points": 60,
        "points_needed": 40,
    }


def test_a_new_review_date_fires_again(session, silver):
    automation(session, {"kind": "tier_at_risk", "within_days": 14})
    assert run(session, REVIEW - 7 * DAY) == 1

    later = REVIEW + 90 * DAY
    session.execute(
        sa.update(Member).where(Member.external_id == "c1").values(tier_retained_until=later)
    )

    assert run(session, later - 7 * DAY) == 1
    assert fired(session)[-1]["trigger"]["review_at"] == later.isoformat()


def test_simulate_explains_a_tier_trigger(session, silver):
    at_risk = automation(session, {"kind": "tier_at_risk", "within_days": 14})

    kept = services.simulate(session, at_risk.public_id, "c2", now=REVIEW - 7 * DAY)
    lost = services.simulate(session, at_risk.public_id, "c1", now=REVIEW - 7 * DAY)

    assert (kept.reason, lost.reason) == ("not_due", "due")
    assert "14 days" in kept.detail
    assert lost.trigger is not None
    assert lost.trigger["points_needed"] == 40


def test_tier_at_risk_needs_within_days(session):
    with pytest.raises(ValidationFailed) as missing:
        automation(session, {"kind": "tier_at_risk"})

    assert "trigger.within_days" in missing.value.extra["errors"]
