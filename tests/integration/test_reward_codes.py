"""A coupon an automation granted is a reward redemption of 0 points: the checkout
validates and consumes its code like any other, until the automation's expiry, and
cancelling it gives back its unit of stock without a ledger transaction (no points moved).
The console's member page shows each redemption's code state."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loyalty.ledger.models import LedgerTransaction
from loyalty.rewards import codes
from loyalty.rewards.exceptions import RewardCodeExpired
from loyalty.rewards.models import Reward, RewardRedemption
from loyalty.rewards.policy import CodeState
from loyalty.webhooks.models import OutboxEvent
from tests import helpers
from tests.console import sign_in
from tests.factories import ApiKeyFactory
from tests.integration.test_automation_actions import ENROLLED, coupon_action, members
from tests.integration.test_automation_triggers import reward
from tests.integration.test_automations import DAY, T0, WEBHOOK, automation, run


@pytest.fixture
def coupon(session) -> RewardRedemption:
    """Member c1's coupon for a 500-point Mug (5 in stock), granted at T0 for 7 days."""
    mug = reward(session, "Mug", 500, stock=5)
    automation(session, ENROLLED, actions=[WEBHOOK, coupon_action(mug.public_id, days=7)])
    members("c1")
    assert run(session, T0) == 1
    return session.scalars(sa.select(RewardRedemption)).one()


def test_a_granted_coupon_validates_as_the_members_code_until_it_expires(session, coupon):
    checked = codes.validate(session, coupon.code, "c1", now=T0 + DAY)
    assert (checked.external_id, checked.points, checked.status, checked.usable) == (
        "c1",
        0,
        CodeState.ACTIVE,
        True,
    )
    expired = codes.validate(session, coupon.code, "c1", now=T0 + 7 * DAY)
    assert (expired.status, expired.usable) == (CodeState.EXPIRED, False)


def test_a_granted_coupon_is_consumed_once(session, coupon):
    used = codes.consume(session, coupon.code, "c1", order_id="o-1", now=T0 + DAY)
    assert (used.status, used.used_at) == (CodeState.USED, T0 + DAY)


def test_a_granted_coupon_cannot_be_consumed_after_its_expiry(session, coupon):
    with pytest.raises(RewardCodeExpired):
        codes.consume(session, coupon.code, "c1", now=T0 + 7 * DAY)


def test_cancelling_a_granted_coupon_gives_back_its_unit_and_moves_no_points(session, coupon):
    ledger_before = session.scalar(sa.select(sa.func.count(LedgerTransaction.id)))

    cancelled = codes.cancel(session, "c1", coupon.public_id, "ops", now=T0 + DAY)

    assert cancelled.status == CodeState.CANCELLED
    assert session.scalar(sa.select(Reward.stock)) == 5
    assert session.scalar(sa.select(sa.func.count(LedgerTransaction.id))) == ledger_before
    assert coupon.restore_transaction_id is None
    [payload] = session.scalars(
        sa.select(OutboxEvent.payload).where(OutboxEvent.type == "reward.redemption_cancelled")
    )
    assert payload["points_restored"] == 0


def test_the_console_shows_each_redemptions_code_state_and_expiry(app, client):
    with helpers.services(app) as session:
        key = ApiKeyFactory(name="ops-admin", scopes=("admin",))
        mug = reward(session, "Mug", 500)
        automation(session, ENROLLED, actions=[coupon_action(mug.public_id, days=7)])
        members("c1")
        run(session, T0)
        code = session.scalars(sa.select(RewardRedemption.code)).one()
        codes.consume(session, code, "c1", now=T0 + DAY)
    sign_in(client, key)

    page = client.get("/admin/members/c1").text

    expires = (T0 + 7 * DAY).strftime("%Y-%m-%d")
    assert (
        f'<td data-label="Code"><code>{code}</code></td><td data-label="Points" class="num">0</td>'
        f'<td data-label="Status">used</td><td data-label="Expires">{expires}</td>'
    ) in page
