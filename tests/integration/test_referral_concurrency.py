"""Referrals under concurrency: friends enrolling with one code at once respect the
referrer's limit (the referrer's row lock counts them one after the other), and jobs
workers running at once reward a referral once."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from loyalty.db import utcnow
from loyalty.extensions import db
from loyalty.ledger import verify as ledger_verify
from loyalty.membership import services as members
from loyalty.program import services as program
from loyalty.referrals import services as referrals
from loyalty.referrals.models import Referral, ReferralStatus
from tests.commands import enrollment
from tests.concurrency import race, raised
from tests.factories import MemberFactory, OrderFactory, RuleFactory

pytestmark = pytest.mark.committed

DAY = dt.timedelta(days=1)


def statuses(session) -> list[str]:
    session.expire_all()
    return sorted(session.scalars(sa.select(Referral.status)))


def assert_ledger_verifies(session) -> None:
    session.expire_all()
    report = ledger_verify.verify(session)
    assert report.ok, report.problems


def test_friends_enrolling_with_one_code_at_once_respect_the_limit(session, app):
    program.update_settings(
        session, program.SettingsChanges(referral_max_per_period=3, referral_period_days=30)
    )
    code = MemberFactory(external_id="host").referral_code
    session.close()

    results = race(
        app,
        10,
        lambda n: members.enroll(
            db.session, enrollment({"external_id": f"friend{n}", "referral_code": code})
        )[1],
    )

    assert raised(results) == []
    assert statuses(session) == [ReferralStatus.LINKED] * 3 + [ReferralStatus.OVER_LIMIT] * 7


def test_jobs_running_at_once_reward_a_referral_once(session, app):
    t0 = utcnow() - 30 * DAY
    RuleFactory()
    program.update_settings(
        session,
        program.SettingsChanges(referral_referrer_points=500, referral_friend_points=250),
    )
    code = MemberFactory(external_id="host", now=t0).referral_code
    for n in range(5):
        MemberFactory(external_id=f"friend{n}", referral_code=code, now=t0)
        OrderFactory(order_id=f"o{n}", member_id=f"friend{n}", now=t0)
    session.close()

    results = race(app, 4, lambda _: referrals.reward_due(db.session, now=t0 + 15 * DAY))

    assert raised(results) == []
    assert sum(results) == 5
    assert statuses(session) == [ReferralStatus.REWARDED] * 5
    card = members.card(session, "host", t0 + 15 * DAY)
    assert card.available == 5 * 500
    assert_ledger_verifies(session)
