"""What automations give: a reward as a coupon (a redemption without points, with an expiry,
one per firing, never beyond the reward's stock or codes), a benefit for some days, and a
budget across all members per period that caps the points and coupons they grant, announced
once per period when used up."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from loyalty.automations import firing, services
from loyalty.automations.definitions import check_definition
from loyalty.automations.models import AutomationBudgetUsage, AutomationFiring
from loyalty.errors import ValidationFailed
from loyalty.membership import overview
from loyalty.membership import services as membership
from loyalty.program import services as program
from loyalty.rewards import services as rewards
from loyalty.rewards.definitions import RewardChanges, update_reward
from loyalty.rewards.models import Reward, RewardRedemption
from loyalty.schemas.webhooks import EVENT_PAYLOAD_SCHEMAS
from loyalty.webhooks import outbox
from loyalty.webhooks.models import OutboxEvent
from tests import helpers
from tests.commands import program_changes
from tests.factories import ApiKeyFactory, MemberFactory, RuleFactory
from tests.integration.test_automation_triggers import reward
from tests.integration.test_automations import DAY, T0, WEBHOOK, automation, fired, run
from tests.integration.test_console_security import sign_in

ENROLLED = {"kind": "enrolled", "delay_days": 0}


def coupon_action(reward_id: Any, days: int = 30) -> dict[str, Any]:
    return {"type": "grant_coupon", "reward_id": str(reward_id), "expires_in_days": days}


def points_action(points: int = 200) -> dict[str, Any]:
    rule = RuleFactory(bonus=True, name="Gift", points=points, conditions={})
    return {"type": "grant_points", "rule_id": str(rule.public_id)}


def members(*external_ids: str, now: dt.datetime = T0) -> None:
    for external_id in external_ids:
        MemberFactory(external_id=external_id, now=now)


def documented(event_type: str, payload: dict[str, Any]) -> bool:
    """Whether the payload is exactly what the OpenAPI document describes for the event (its
    schema refuses a missing field and an undocumented one alike)."""
    return EVENT_PAYLOAD_SCHEMAS[event_type]().validate(payload) == {}


def exhausted(session: Any) -> list[dict[str, Any]]:
    return list(
        session.scalars(
            sa.select(OutboxEvent.payload)
            .where(OutboxEvent.type == "automation.budget_exhausted")
            .order_by(OutboxEvent.id)
        )
    )


# --- grant_coupon -----------------------------------------------------------------------------


def test_a_coupon_is_a_reward_redemption_that_spends_no_points(session):
    mug = reward(session, "Mug", 500)
    automation(session, ENROLLED, actions=[WEBHOOK, coupon_action(mug.public_id, days=30)])
    members("c1")

    assert run(session, T0) == 1

    redemption = session.scalars(sa.select(RewardRedemption)).one()
    firing_row = session.scalars(sa.select(AutomationFiring)).one()
    assert (redemption.points, redemption.transaction_id) == (0, None)
    assert redemption.expires_at == T0 + 30 * DAY
    assert redemption.firing_id == firing_row.id
    assert membership.card(session, "c1", now=T0).available == 0
    [payload] = fired(session)
    assert payload["coupon"] == {
        "id": str(redemption.public_id),
        "reward_id": str(mug.public_id),
        "reward": "Mug",
        "code": redemption.code,
        "expires_at": (T0 + 30 * DAY).isoformat(),
    }
    assert (payload["points_granted"], payload["benefit"], payload["withheld"]) == (None, None, [])
    assert documented("automation.fired", payload)
    [held] = rewards.member_redemptions(session, redemption.member_id)
    assert (held.code, held.points, held.expires_at) == (redemption.code, 0, T0 + 30 * DAY)


def test_coupons_take_the_rewards_stock_and_none_beyond_it(session):
    mug = reward(session, "Mug", 500, stock=2)
    automation(session, ENROLLED, actions=[WEBHOOK, coupon_action(mug.public_id)])
    members("c1", "c2", "c3")

    summary = firing.fire_due(session, now=T0)

    assert (summary.total, summary.coupons_granted) == (3, 2)
    assert [p["coupon"] is not None for p in fired(session)] == [True, True, False]
    assert fired(session)[2]["withheld"] == [{"action": "grant_coupon", "reason": "out_of_stock"}]
    assert session.scalar(sa.select(Reward.stock).where(Reward.public_id == mug.public_id)) == 0


def test_coupons_hand_out_the_rewards_pool_of_codes(session):
    mug = reward(session, "Mug", 500, codes=("MUG-A", "MUG-B"))
    automation(session, ENROLLED, actions=[WEBHOOK, coupon_action(mug.public_id)])
    members("c1", "c2", "c3")

    run(session, T0)

    coupons = [p["coupon"] for p in fired(session)]
    assert [c["code"] if c else None for c in coupons] == ["MUG-A", "MUG-B", None]
    assert fired(session)[2]["withheld"] == [{"action": "grant_coupon", "reason": "out_of_stock"}]


def test_a_coupon_of_a_reward_closed_since_is_withheld(session):
    mug = reward(session, "Mug", 500)
    automation(session, ENROLLED, actions=[WEBHOOK, coupon_action(mug.public_id)])
    update_reward(session, mug.public_id, RewardChanges(active=False))
    members("c1")

    assert run(session, T0) == 1

    [payload] = fired(session)
    assert payload["coupon"] is None
    assert payload["withheld"] == [{"action": "grant_coupon", "reason": "reward_unavailable"}]
    assert session.scalar(sa.select(sa.func.count()).select_from(RewardRedemption)) == 0


def test_a_firing_grants_one_coupon_at_most(session):
    mug = reward(session, "Mug", 500)
    automation(session, ENROLLED, actions=[coupon_action(mug.public_id)])
    members("c1")
    run(session, T0)
    firing_row = session.scalars(sa.select(AutomationFiring)).one()
    open_mug = rewards.grantable_reward(session, mug.public_id, T0)
    assert open_mug is not None

    with pytest.raises(IntegrityError), session.begin_nested():
        rewards.grant_coupon(session, open_mug, firing_row.member_id, firing_row.id, T0, T0)


def test_a_pass_that_fails_after_granting_a_coupon_leaves_none_and_the_next_grants_it(
    session, monkeypatch
):
    mug = reward(session, "Mug", 500, stock=1)
    automation(session, ENROLLED, actions=[WEBHOOK, coupon_action(mug.public_id)])
    members("c1")
    real_emit_many = outbox.emit_many

    def killed(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("worker killed")

    monkeypatch.setattr(outbox, "emit_many", killed)
    with pytest.raises(RuntimeError):
        run(session, T0)
    assert session.scalar(sa.select(sa.func.count()).select_from(RewardRedemption)) == 0
    assert session.scalar(sa.select(Reward.stock).where(Reward.public_id == mug.public_id)) == 1

    monkeypatch.setattr(outbox, "emit_many", real_emit_many)
    assert run(session, T0) == 1
    assert fired(session)[0]["coupon"] is not None


# --- grant_benefit ----------------------------------------------------------------------------


def test_a_benefit_is_held_for_its_days(session):
    action = {"type": "grant_benefit", "code": "free_shipping", "params": {"min": 0}, "days": 7}
    automation(session, ENROLLED, actions=[WEBHOOK, action])
    members("c1")

    summary = firing.fire_due(session, now=T0)

    assert summary.benefits_granted == 1
    [held] = overview.benefits(session, "c1", now=T0 + 7 * DAY - dt.timedelta(seconds=1))
    assert (held.code, held.params, held.source) == ("free_shipping", {"min": 0}, "grant")
    assert held.ends_at == T0 + 7 * DAY
    assert overview.benefits(session, "c1", now=T0 + 7 * DAY) == []
    assert fired(session)[0]["benefit"] == {
        "code": "free_shipping",
        "params": {"min": 0},
        "ends_at": (T0 + 7 * DAY).isoformat(),
    }
    assert documented("automation.fired", fired(session)[0])


def test_a_benefit_without_days_is_held_for_good(session):
    automation(session, ENROLLED, actions=[{"type": "grant_benefit", "code": "vip_line"}])
    members("c1")

    run(session, T0)

    [held] = overview.benefits(session, "c1", now=T0 + 3650 * DAY)
    assert (held.code, held.params, held.ends_at) == ("vip_line", {}, None)


# --- budgets ----------------------------------------------------------------------------------


def test_an_automation_budget_caps_its_grants_across_members(session):
    gift = automation(
        session,
        ENROLLED,
        actions=[WEBHOOK, points_action(200)],
        budget={"period": "lifetime", "points": 500},
    )
    members("c1", "c2", "c3", "c4")

    summary = firing.fire_due(session, now=T0)

    assert (summary.total, summary.points_granted) == (4, 500)
    assert [p["points_granted"] for p in fired(session)] == [200, 200, 100, 0]
    assert fired(session)[3]["withheld"] == [
        {"action": "grant_points", "reason": "automation_budget"}
    ]
    assert membership.card(session, "c4", now=T0).available == 0
    assert all(documented("automation.fired", payload) for payload in fired(session))
    assert documented("automation.budget_exhausted", exhausted(session)[0])
    assert exhausted(session) == [
        {
            "automation": {"id": str(gift.public_id), "name": "Test", "version": 1},
            "budget": {"period": "lifetime", "points": 500},
            "period": "lifetime",
            "period_start": None,
            "period_end": None,
            "limit": 500,
            "used": 500,
        }
    ]
    usage = services.get_automation(session, gift.public_id, now=T0).budget_usage
    assert usage is not None
    assert (usage.limit, usage.used, usage.remaining, usage.exhausted_at) == (500, 500, 0, T0)


def test_an_automation_budget_starts_afresh_each_period(session):
    gift = automation(
        session,
        ENROLLED,
        actions=[WEBHOOK, points_action(200)],
        budget={"period": "day", "points": 300},
    )
    members("c1", "c2")
    members("c3", now=T0 + DAY)

    run(session, T0)
    run(session, T0 + DAY)

    assert [p["points_granted"] for p in fired(session)] == [200, 100, 200]
    assert [e["period_start"] for e in exhausted(session)] == [T0.replace(hour=0).isoformat()]
    usage = services.get_automation(session, gift.public_id, now=T0 + DAY).budget_usage
    assert usage is not None
    assert (usage.used, usage.remaining, usage.exhausted_at) == (200, 100, None)


def test_coupons_count_in_the_budget_at_the_rewards_cost(session):
    mug = reward(session, "Mug", 100)
    automation(
        session,
        ENROLLED,
        actions=[WEBHOOK, coupon_action(mug.public_id)],
        budget={"period": "lifetime", "points": 250},
    )
    members("c1", "c2", "c3")

    summary = firing.fire_due(session, now=T0)

    assert summary.coupons_granted == 2
    assert fired(session)[2]["withheld"] == [
        {"action": "grant_coupon", "reason": "automation_budget"}
    ]
    # Too little left for the next coupon: the period is as good as used up, and says so once.
    assert [(e["used"], e["limit"]) for e in exhausted(session)] == [(200, 250)]
    assert session.scalar(sa.select(AutomationBudgetUsage.used)) == 200


def test_an_exhausted_budget_is_announced_once_per_period(session):
    automation(
        session,
        ENROLLED,
        actions=[points_action(200)],
        budget={"period": "lifetime", "points": 200},
    )
    members("c1", "c2")
    members("c3", now=T0 + DAY)

    run(session, T0)
    run(session, T0 + DAY)

    assert len(exhausted(session)) == 1


def test_a_money_budget_is_counted_in_points_at_the_program_point_value(session):
    # 100 points are worth 2.00: a budget of 1.00 is 50 points.
    program.update_settings(
        session, program_changes({"point_value_points": 100, "point_value_amount": 200}), None
    )
    gift = automation(
        session,
        ENROLLED,
        actions=[points_action(200)],
        budget={"period": "month", "amount": 100},
    )
    members("c1")

    run(session, T0)

    usage = services.get_automation(session, gift.public_id, now=T0).budget_usage
    assert usage is not None
    assert (usage.limit, usage.used) == (50, 50)
    assert membership.card(session, "c1", now=T0).available == 50


# --- definitions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "field"),
    [
        ({"type": "grant_coupon", "expires_in_days": 30}, "actions.0.reward_id"),
        ({"type": "grant_coupon", "reward_id": "x", "expires_in_days": 30}, "actions.0.reward_id"),
        (
            {"type": "grant_coupon", "reward_id": "1" * 32, "expires_in_days": 0},
            "actions.0.expires_in_days",
        ),
        ({"type": "grant_benefit"}, "actions.0.code"),
        ({"type": "grant_benefit", "code": "Free Shipping"}, "actions.0.code"),
        ({"type": "grant_benefit", "code": "vip", "days": 0}, "actions.0.days"),
        ({"type": "grant_benefit", "code": "vip", "rule_id": "x"}, "actions.0.rule_id"),
    ],
)
def test_an_invalid_action_is_refused_with_its_field(session, action, field):
    fields = {
        "name": "Test",
        "trigger": ENROLLED,
        "conditions": {},
        "actions": [action],
        "dedup_days": None,
        "budget": None,
        "active": True,
    }

    with pytest.raises(ValidationFailed) as refused:
        check_definition(fields)

    assert field in refused.value.extra["errors"]


def test_a_coupon_of_an_inactive_reward_is_refused(session):
    mug = reward(session, "Mug", 100, active=False)

    with pytest.raises(ValidationFailed) as refused:
        automation(session, ENROLLED, actions=[coupon_action(mug.public_id)])

    assert "actions.0.reward_id" in refused.value.extra["errors"]


def test_a_budget_needs_a_grant_it_can_count(session):
    with pytest.raises(ValidationFailed) as refused:
        automation(
            session,
            ENROLLED,
            actions=[WEBHOOK, {"type": "grant_benefit", "code": "vip"}],
            budget={"period": "day", "points": 100},
        )

    assert "budget" in refused.value.extra["errors"]


# --- console ----------------------------------------------------------------------------------


def test_the_console_shows_the_grants_and_the_budgets_usage(app, client):
    with helpers.services(app) as session:
        key = ApiKeyFactory(name="ops-admin", scopes=("admin",))
        mug = reward(session, "Mug", 100)
        gift = automation(
            session,
            ENROLLED,
            actions=[
                coupon_action(mug.public_id, days=14),
                {"type": "grant_benefit", "code": "free_shipping", "days": 7},
            ],
            budget={"period": "lifetime", "points": 250},
        )
        members("c1", "c2", "c3")
        firing.fire_due(session, now=T0)
    sign_in(client, key)

    page = client.get(f"/admin/automations/{gift.public_id}").text

    assert f"reward {str(mug.public_id)[:8]}</a>, valid 14 days" in page
    assert "grant benefit <code>free_shipping</code> for 7 days" in page
    assert "Budget: 250 points in all" in page
    assert '<span class="value" id="budget-used">200 of 250 points</span>' in page
    assert "grants withheld" in page
