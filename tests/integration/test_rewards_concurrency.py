"""Rewards under real traffic: many members redeeming the last units of a reward, or the last
codes of a coupon pool, at the same instant, one member tapping "redeem" many times
against a per-member limit, and one code consumed by several checkouts, or consumed and
cancelled, at once.

Each racer runs in its own thread with its own app context (so its own session and
connection), and all of them are released together by a barrier. These need PostgreSQL's
row locks.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.extensions import db
from loyalty.ledger import verify as ledger_verify
from loyalty.ledger.models import LedgerTransaction, MemberBalance, TransactionKind
from loyalty.members.models import Member
from loyalty.membership import adjustments
from loyalty.rewards import codes as reward_codes
from loyalty.rewards import definitions as reward_definitions
from loyalty.rewards import services as rewards
from loyalty.rewards.codes import RewardCodeView
from loyalty.rewards.definitions import RewardDefinition
from loyalty.rewards.exceptions import RewardCodeCancelled, RewardCodeUsed, RewardUnavailable
from loyalty.rewards.models import Reward, RewardCode, RewardRedemption
from loyalty.rewards.services import RedeemedReward
from loyalty.webhooks.models import OutboxEvent
from tests.concurrency import race
from tests.factories import MemberFactory

# Threads and processes commit and read each other's commits.
pytestmark = [pytest.mark.postgresql_only, pytest.mark.committed]

MEMBERS = 30
POINTS_EACH = 1000
COST = 300


def enrol_with_points(session: Session, count: int, points: int) -> list[str]:
    ids = [f"m{n:02d}" for n in range(count)]
    for external_id in ids:
        MemberFactory(external_id=external_id)
        adjustments.adjust(session, external_id, points, "enough for a reward", None)
    return ids


def balances(session: Session) -> dict[str, int]:
    """Each member's available points, by external id."""
    session.expire_all()
    rows = session.execute(
        sa.select(Member.external_id, MemberBalance.available).join(
            MemberBalance, MemberBalance.member_id == Member.id
        )
    )
    return {external_id: points for external_id, points in rows}


def redeem_transactions(session: Session) -> int:
    return session.scalar(
        sa.select(sa.func.count(LedgerTransaction.id)).where(
            LedgerTransaction.kind == TransactionKind.REDEEM.value
        )
    )


def assert_ledger_verifies(session: Session) -> None:
    session.expire_all()
    report = ledger_verify.verify(session)
    assert report.ok, report.problems


def outcome(result: Any) -> str:
    return "redeemed" if isinstance(result, RedeemedReward) else type(result).__name__


def charged_exactly_the_winners(ids: list[str], results: list[Any]) -> dict[str, int]:
    """The balance each member should have: charged if and only if they won."""
    return {
        external_id: POINTS_EACH - (COST if isinstance(result, RedeemedReward) else 0)
        for external_id, result in zip(ids, results, strict=True)
    }


def test_thirty_members_racing_for_the_last_five_units_five_win_and_no_loser_pays(app, session):
    ids = enrol_with_points(session, MEMBERS, POINTS_EACH)
    reward = reward_definitions.create_reward(
        session,
        RewardDefinition(
            **{"name": "Tote bag", "kind": "product", "cost_points": COST, "stock": 5}
        ),
    )
    reward_id = reward.public_id
    session.close()

    results = race(app, MEMBERS, lambda n: rewards.redeem(db.session, ids[n], reward_id))

    assert Counter(outcome(r) for r in results) == {"redeemed": 5, "OutOfStock": 25}
    losers = [r for r in results if outcome(r) != "redeemed"]
    assert all(loser.status == 422 and loser.code == "out_of_stock" for loser in losers)
    assert session.scalar(sa.select(Reward.stock)) == 0
    assert balances(session) == charged_exactly_the_winners(ids, results)
    assert redeem_transactions(session) == 5
    assert session.scalar(sa.select(sa.func.count(RewardRedemption.id))) == 5
    assert_ledger_verifies(session)


def test_thirty_members_racing_for_the_last_five_pool_codes_get_five_distinct_codes(app, session):
    ids = enrol_with_points(session, MEMBERS, POINTS_EACH)
    pool = [f"CAFE-{n}" for n in range(5)]
    reward = reward_definitions.create_reward(
        session,
        RewardDefinition(
            **{"name": "Free coffee", "kind": "coupon", "cost_points": COST, "codes": pool}
        ),
    )
    reward_id = reward.public_id
    session.close()

    results = race(app, MEMBERS, lambda n: rewards.redeem(db.session, ids[n], reward_id).code)

    codes = [r for r in results if isinstance(r, str)]
    assert sorted(codes) == pool
    assert Counter(type(r).__name__ for r in results if not isinstance(r, str)) == {
        "OutOfStock": 25
    }
    winners = {ids[n] for n, r in enumerate(results) if isinstance(r, str)}
    assert balances(session) == {
        external_id: POINTS_EACH - (COST if external_id in winners else 0) for external_id in ids
    }
    assert session.scalar(sa.select(Reward.stock)) is None
    handed_out = session.execute(
        sa.select(RewardCode.code, RewardRedemption.code).join(
            RewardRedemption, RewardRedemption.id == RewardCode.redemption_id
        )
    ).all()
    assert sorted(pool_code for pool_code, _ in handed_out) == pool
    assert all(pool_code == given for pool_code, given in handed_out)
    assert redeem_transactions(session) == 5
    assert_ledger_verifies(session)


def test_one_member_redeeming_many_times_at_once_gets_a_limit_of_one_reward_once(app, session):
    (external_id,) = enrol_with_points(session, 1, POINTS_EACH * 10)
    reward = reward_definitions.create_reward(
        session,
        RewardDefinition(
            **{
                "name": "Welcome gift",
                "kind": "product",
                "cost_points": COST,
                "per_member_limit": 1,
            }
        ),
    )
    reward_id = reward.public_id
    session.close()

    results = race(app, 10, lambda _: rewards.redeem(db.session, external_id, reward_id))

    assert Counter(outcome(r) for r in results) == {"redeemed": 1, "RewardUnavailable": 9}
    losers = [r for r in results if isinstance(r, RewardUnavailable)]
    assert all("limit reached" in str(loser) for loser in losers)
    assert balances(session) == {external_id: POINTS_EACH * 10 - COST}
    assert redeem_transactions(session) == 1
    assert_ledger_verifies(session)


def one_redemption(session: Session) -> RedeemedReward:
    """Member m00's redemption of a 300-point reward with one unit left."""
    (external_id,) = enrol_with_points(session, 1, POINTS_EACH)
    reward = reward_definitions.create_reward(
        session,
        RewardDefinition(
            **{
                "name": "5.00 off",
                "kind": "fixed_discount",
                "cost_points": COST,
                "value_amount": 500,
                "stock": 1,
            }
        ),
    )
    redemption = rewards.redeem(session, external_id, reward.public_id)
    session.close()
    return redemption


def restore_transactions(session: Session) -> int:
    return session.scalar(
        sa.select(sa.func.count(LedgerTransaction.id)).where(
            LedgerTransaction.kind == TransactionKind.RESTORE.value
        )
    )


def test_checkouts_consuming_one_code_at_once_exactly_one_wins(app, session):
    code = one_redemption(session).code

    results = race(
        app, 8, lambda n: reward_codes.consume(db.session, code, "m00", order_id=f"o{n}")
    )

    winners = [r for r in results if isinstance(r, RewardCodeView)]
    assert len(winners) == 1
    assert Counter(type(r).__name__ for r in results if r not in winners) == {"RewardCodeUsed": 7}
    assert all(
        isinstance(r, RewardCodeUsed) and r.status == 409 for r in results if r not in winners
    )
    session.expire_all()
    used = session.scalars(sa.select(RewardRedemption)).one()
    assert (used.status, used.used_order_id) == ("used", winners[0].used_order_id)
    announced = sa.select(sa.func.count(OutboxEvent.id)).where(
        OutboxEvent.type == "reward.code_used"
    )
    assert session.scalar(announced) == 1


def test_a_code_consumed_and_cancelled_at_once_is_one_or_the_other(app, session):
    redemption = one_redemption(session)

    def consume_or_cancel(n: int) -> Any:
        if n % 2:
            return reward_codes.consume(db.session, redemption.code, "m00")
        return reward_codes.cancel(db.session, "m00", redemption.public_id)

    results = race(app, 6, consume_or_cancel)

    outcomes = Counter(
        r.status.value if isinstance(r, RewardCodeView) else type(r).__name__ for r in results
    )
    session.expire_all()
    stored = session.scalars(sa.select(RewardRedemption)).one()
    if stored.status == "used":
        # The consume won: the other consumes were told so, and so were the cancels.
        assert outcomes == {"used": 1, "RewardCodeUsed": 5}
        assert balances(session) == {"m00": POINTS_EACH - COST}
        assert (session.scalar(sa.select(Reward.stock)), restore_transactions(session)) == (0, 0)
    else:
        # A cancel won: the other cancels answer the same, the consumes are refused.
        assert outcomes == {"cancelled": 3, "RewardCodeCancelled": 3}
        assert all(isinstance(r, RewardCodeCancelled) for r in results[1::2])
        assert balances(session) == {"m00": POINTS_EACH}
        assert (session.scalar(sa.select(Reward.stock)), restore_transactions(session)) == (1, 1)
    assert_ledger_verifies(session)
