"""Referrals: a friend enrolling with a member's code is linked; both are rewarded once the
friend's first order is past its return window (the test sets the clock), a refund inside
the window cancels, a referrer's referrals are limited per period, and nobody refers
themselves. Every test runs on SQLite and PostgreSQL and leaves a ledger that verifies."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
import sqlalchemy as sa

from loyalty.db import utcnow
from loyalty.members import lookup
from loyalty.members.exceptions import ReferrerNotFound
from loyalty.members.referral_codes import ALPHABET, LENGTH
from loyalty.membership import services as members
from loyalty.orders import refunds
from loyalty.program import services as program
from loyalty.referrals import services as referrals
from loyalty.referrals.exceptions import ReferralCodeNotFound, SelfReferral
from loyalty.referrals.models import Referral, ReferralStatus
from loyalty.schemas.webhooks import EVENT_PAYLOAD_SCHEMAS
from loyalty.webhooks.models import OutboxEvent
from tests.commands import refund_command
from tests.factories import MemberFactory, OrderFactory, RuleFactory

pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")

DAY = dt.timedelta(days=1)
WINDOW = dt.timedelta(days=14)  # the program's default pending_days
ORDER_POINTS = 62  # the default order (62.00) under the 1-point-per-dollar rule


@pytest.fixture
def t0() -> dt.datetime:
    return utcnow() - 60 * DAY  # far enough back for the test to move the clock forward


@pytest.fixture
def rewards(session) -> None:
    """500 points for the referrer, 250 for the friend; earning 1 point per dollar."""
    RuleFactory()
    set_referral(session, referrer_points=500, friend_points=250)


def set_referral(session, **columns: Any) -> None:
    program.update_settings(
        session,
        program.SettingsChanges(**{f"referral_{name}": value for name, value in columns.items()}),
    )


@pytest.fixture
def host(session, t0) -> str:
    """The referrer; returns their code."""
    member = MemberFactory(external_id="host", email="host@example.com", now=t0)
    return member.referral_code


def friend_of(code: str, external_id: str = "friend", now: dt.datetime | None = None, **body):
    return MemberFactory(external_id=external_id, referral_code=code, now=now, **body)


def referral_of(session, external_id: str = "friend") -> Referral:
    member = lookup.find_member(session, external_id)
    return session.execute(
        sa.select(Referral)
        .where(Referral.referred_id == member.id)
        .execution_options(populate_existing=True)
    ).scalar_one()


def balance(session, external_id: str, now: dt.datetime) -> dict[str, int]:
    """The member's balance as their card shows it at `now`."""
    card = members.card(session, external_id, now)
    return {"available": card.available, "pending": card.pending}


def events(session, event_type: str) -> list[dict[str, Any]]:
    payloads = list(
        session.scalars(
            sa.select(OutboxEvent.payload)
            .where(OutboxEvent.type == event_type)
            .order_by(OutboxEvent.id)
        )
    )
    schema = EVENT_PAYLOAD_SCHEMAS[event_type]()
    for payload in payloads:
        assert schema.validate(payload) == {}, payload
    return payloads


# --- codes and linking ---------------------------------------------------------------------


def test_every_member_has_a_random_code_of_its_own(session, t0):
    codes = [MemberFactory(now=t0).referral_code for _ in range(20)]

    assert len(set(codes)) == 20
    assert all(re.fullmatch(f"[{ALPHABET}]{{{LENGTH}}}", code) for code in codes)


def test_a_friend_enrolling_with_a_code_is_linked_to_its_member(session, host, t0):
    friend_of(host.lower(), now=t0)  # codes are typed in any case

    referral = referral_of(session)
    assert referral.status == ReferralStatus.LINKED
    assert referral.code == host
    assert lookup.find_member(session, "friend").referred_by_id == (
        lookup.find_member(session, "host").id
    )
    [linked] = events(session, "referral.linked")
    assert linked["referrer_id"] == "host"
    assert linked["member_id"] == "friend"
    assert linked["status"] == "linked"


def test_a_code_nobody_has_is_refused(session, host):
    with pytest.raises(ReferralCodeNotFound):
        friend_of("NOPE2345")
    assert lookup.member_by_external_id(session, "friend") is None


def test_referred_by_still_links_the_friend(session, host, t0):
    MemberFactory(external_id="friend", referred_by="host", now=t0)

    referral = referral_of(session)
    assert referral.status == ReferralStatus.LINKED
    assert referral.code is None


def test_referred_by_naming_nobody_is_refused(session):
    with pytest.raises(ReferrerNotFound):
        MemberFactory(external_id="friend", referred_by="nobody")


def test_a_friend_with_the_referrers_email_is_refused_as_a_self_referral(session, host):
    with pytest.raises(SelfReferral):
        friend_of(host, email="HOST@example.com")
    assert lookup.member_by_external_id(session, "friend") is None


def test_a_member_naming_themselves_is_refused_as_a_self_referral(session):
    with pytest.raises(SelfReferral):
        MemberFactory(external_id="solo", referred_by="solo")


# --- rewards after the return window -------------------------------------------------------


def test_both_sides_are_rewarded_once_the_first_order_is_past_its_window(
    session, rewards, host, t0
):
    friend_of(host, now=t0)
    OrderFactory(member_id="friend", now=t0)

    assert referral_of(session).status == ReferralStatus.QUALIFYING
    assert referrals.reward_due(session, now=t0 + WINDOW - dt.timedelta(seconds=1)) == 0
    assert balance(session, "host", t0 + WINDOW - dt.timedelta(seconds=1)) == {
        "available": 0,
        "pending": 0,
    }

    assert referrals.reward_due(session, now=t0 + WINDOW) == 1

    referral = referral_of(session)
    assert referral.status == ReferralStatus.REWARDED
    assert (referral.referrer_points, referral.friend_points) == (500, 250)
    assert balance(session, "host", t0 + WINDOW) == {"available": 500, "pending": 0}
    assert balance(session, "friend", t0 + WINDOW) == {
        "available": 250 + ORDER_POINTS,
        "pending": 0,
    }
    [rewarded] = events(session, "referral.rewarded")
    assert rewarded["order_id"] == "o1"
    assert (rewarded["referrer_points"], rewarded["friend_points"]) == (500, 250)


def test_a_referral_is_rewarded_once(session, rewards, host, t0):
    friend_of(host, now=t0)
    OrderFactory(member_id="friend", now=t0)
    OrderFactory(order_id="o2", member_id="friend", now=t0 + DAY)

    assert referrals.reward_due(session, now=t0 + 2 * WINDOW) == 1
    assert referrals.reward_due(session, now=t0 + 3 * WINDOW) == 0
    assert balance(session, "host", t0 + 3 * WINDOW)["available"] == 500


def test_an_order_placed_before_its_window_ended_rewards_at_once(session, rewards, host, t0):
    friend_of(host, now=t0)
    now = t0 + 30 * DAY
    OrderFactory(member_id="friend", placed_at=t0 + DAY, now=now)

    assert referral_of(session).status == ReferralStatus.REWARDED
    assert balance(session, "host", now)["available"] == 500


def test_a_setting_of_zero_pays_that_side_nothing(session, rewards, host, t0):
    set_referral(session, friend_points=0)
    friend_of(host, now=t0)
    OrderFactory(member_id="friend", now=t0)

    referrals.reward_due(session, now=t0 + WINDOW)

    assert (referral_of(session).referrer_points, referral_of(session).friend_points) == (500, 0)
    assert balance(session, "friend", t0 + WINDOW) == {"available": ORDER_POINTS, "pending": 0}


def test_a_suspended_referrer_gets_nothing_and_the_friend_is_still_rewarded(
    session, rewards, host, t0
):
    friend_of(host, now=t0)
    OrderFactory(member_id="friend", now=t0)
    members.update_member(
        session, "host", members.MemberChanges(status=members.MemberStatus.SUSPENDED)
    )

    referrals.reward_due(session, now=t0 + WINDOW)

    assert balance(session, "host", t0 + WINDOW)["available"] == 0
    assert balance(session, "friend", t0 + WINDOW)["available"] == 250 + ORDER_POINTS
    assert referral_of(session).referrer_points == 0


def test_an_order_that_earns_nothing_does_not_start_the_window(session, rewards, host, t0):
    friend_of(host, now=t0)
    # Placed long before the enrolment: history, which earns nothing.
    OrderFactory(member_id="friend", placed_at=t0 - 30 * DAY, now=t0)

    assert referral_of(session).status == ReferralStatus.LINKED


# --- refunds -------------------------------------------------------------------------------


def refund(session, refund_id: str, now: dt.datetime, **body) -> None:
    refunds.refund_order(session, "o1", refund_command({"refund_id": refund_id, **body}), now=now)


def test_a_refund_inside_the_window_cancels_the_reward(session, rewards, host, t0):
    friend_of(host, now=t0)
    OrderFactory(member_id="friend", now=t0)

    refund(session, "r1", t0 + 3 * DAY, lines=[{"sku": "mug", "quantity": 1}])

    assert referral_of(session).status == ReferralStatus.CANCELLED
    assert referrals.reward_due(session, now=t0 + 2 * WINDOW) == 0
    assert balance(session, "host", t0 + 2 * WINDOW) == {"available": 0, "pending": 0}
    [cancelled] = events(session, "referral.cancelled")
    assert cancelled["order_id"] == "o1"
    assert cancelled["reason"] == "refunded"


def test_a_refund_after_the_window_leaves_the_reward_even_before_the_jobs_ran(
    session, rewards, host, t0
):
    friend_of(host, now=t0)
    OrderFactory(member_id="friend", now=t0)

    refund(session, "r1", t0 + WINDOW + DAY, amount=6200)
    assert referrals.reward_due(session, now=t0 + WINDOW + DAY) == 1

    assert balance(session, "host", t0 + WINDOW + DAY)["available"] == 500
    assert events(session, "referral.cancelled") == []


def test_a_refund_of_a_later_order_changes_nothing(session, rewards, host, t0):
    friend_of(host, now=t0)
    OrderFactory(member_id="friend", now=t0)
    OrderFactory(order_id="o2", member_id="friend", now=t0 + DAY)

    refunds.refund_order(
        session, "o2", refund_command({"refund_id": "r2", "amount": 6200}), now=t0 + 2 * DAY
    )

    assert referral_of(session).status == ReferralStatus.QUALIFYING


# --- limits --------------------------------------------------------------------------------


def test_referrals_past_the_limit_of_the_period_are_never_rewarded(session, rewards, host, t0):
    set_referral(session, max_per_period=2, period_days=30)
    for n in range(3):
        friend_of(host, f"friend{n}", now=t0 + n * DAY)
        OrderFactory(order_id=f"o{n}", member_id=f"friend{n}", now=t0 + n * DAY)

    assert [referral_of(session, f"friend{n}").status for n in range(3)] == [
        ReferralStatus.QUALIFYING,
        ReferralStatus.QUALIFYING,
        ReferralStatus.OVER_LIMIT,
    ]
    assert events(session, "referral.linked")[2]["status"] == "over_limit"
    assert referrals.reward_due(session, now=t0 + 2 * WINDOW) == 2
    assert balance(session, "host", t0 + 2 * WINDOW)["available"] == 1000
    assert balance(session, "friend2", t0 + 2 * WINDOW)["available"] == ORDER_POINTS


def test_the_limit_counts_only_the_period(session, rewards, host, t0):
    set_referral(session, max_per_period=1, period_days=30)
    friend_of(host, "early", now=t0)
    friend_of(host, "late", now=t0 + 30 * DAY)

    assert referral_of(session, "late").status == ReferralStatus.LINKED


def test_a_cancelled_referral_frees_its_place(session, rewards, host, t0):
    set_referral(session, max_per_period=1, period_days=30)
    friend_of(host, now=t0)
    OrderFactory(member_id="friend", now=t0)
    refund(session, "r1", t0 + DAY, amount=6200)

    friend_of(host, "second", now=t0 + 2 * DAY)

    assert referral_of(session, "second").status == ReferralStatus.LINKED
