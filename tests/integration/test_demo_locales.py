"""`loyalty demo seed --locale`: the Chinese demo (a CNY program with Chinese names) and the
English default it shares its procedure with."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Flask

from loyalty.automations import services as automations
from loyalty.experiments.models import Experiment
from loyalty.extensions import db
from loyalty.members.lookup import member_by_external_id
from loyalty.membership import services as membership
from loyalty.orders.models import Order
from loyalty.program.services import get_settings
from loyalty.rewards import definitions as rewards
from loyalty.rules import services as rules
from loyalty.tiers import definitions as tiers
from tests.integration.test_cli import demo_keys, run

DEMO_MEMBERS = {"cust_1001": "王芳", "cust_1002": "李伟", "cust_1003": "张敏"}


def chinese(text: str | None) -> bool:
    return text is not None and any("\u4e00" <= char <= "\u9fff" for char in text)


def orders_of(external_id: str) -> list[Order]:
    member = member_by_external_id(db.session, external_id)
    assert member is not None
    return list(db.session.scalars(sa.select(Order).where(Order.member_id == member.id)))


def test_the_chinese_demo_is_a_cny_program_with_chinese_names(app: Flask) -> None:
    result = run(app, "demo", "seed", "--locale", "zh_CN")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:2] == ["currency: CNY", "time zone: Asia/Shanghai"]
    assert "lifetime-value model fitted" in result.stdout
    assert set(demo_keys(result)) == {"checkout", "app", "admin"}
    with app.app_context():
        assert get_settings(db.session).currency == "CNY"
        assert get_settings(db.session).time_zone == "Asia/Shanghai"
        defined_tiers = tiers.list_tiers(db.session)
        listed_rules, _ = rules.list_rules(db.session, active=None, kind=None, limit=50, after=None)
        catalog = rewards.list_rewards(db.session)
        listed_automations, _ = automations.list_automations(
            db.session, active=None, limit=50, after=None
        )
        experiment = db.session.scalars(sa.select(Experiment)).one()
        currencies = set(db.session.scalars(sa.select(Order.currency).distinct()))
        cards = {
            external_id: membership.card(db.session, external_id) for external_id in DEMO_MEMBERS
        }
        placed = {external_id: orders_of(external_id) for external_id in DEMO_MEMBERS}

    assert [tier.name for tier in defined_tiers] == ["银卡会员", "金卡会员", "钻石会员"]
    benefits = [benefit for tier in defined_tiers for benefit in tier.benefits]
    assert all(chinese(benefit["params"]["name"]) for benefit in benefits), benefits
    assert len(listed_rules) == 6  # five earning rules and the experiment's bonus
    assert all(chinese(rule.current.name) for rule in listed_rules)
    assert len(catalog) == 4
    assert all(chinese(reward.name) and chinese(reward.description) for reward in catalog)
    assert len(listed_automations) == 4
    assert all(chinese(automation.current.name) for automation in listed_automations)
    assert chinese(experiment.name)
    assert currencies == {"CNY"}
    for external_id, name in DEMO_MEMBERS.items():
        card = cards[external_id]
        assert card.name == name
        assert card.email is not None
        assert card.email.endswith("@example.com")
        assert placed[external_id], external_id
        # Their orders earned: points pending or already available.
        assert card.available + card.pending > 0, card
        # Prices as a Chinese shop has them: 50 to 800 yuan.
        assert all(5_000 <= order.total <= 80_000 for order in placed[external_id])
    verified = run(app, "ledger", "verify")
    assert verified.exit_code == 0, verified.output


def test_the_chinese_demo_can_be_seeded_again_as_the_english_one_can(app: Flask) -> None:
    first = run(app, "demo", "seed", "--locale", "zh_CN")
    with app.app_context():
        orders_before = db.session.scalar(sa.select(sa.func.count(Order.id)))

    again = run(app, "demo", "seed", "--locale", "zh_CN")

    assert first.exit_code == 0, first.output
    assert again.exit_code == 0, again.output
    for external_id in DEMO_MEMBERS:
        assert f"member {external_id} already enrolled" in again.stdout
    for present in ("earning rules", "tiers", "rewards", "automations"):
        assert f"{present} already present" in again.stdout
    assert "experiment already present" in again.stdout
    assert set(demo_keys(again).values()).isdisjoint(demo_keys(first).values())
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Order.id))) == orders_before
        assert len(tiers.list_tiers(db.session)) == 3
    assert run(app, "ledger", "verify").exit_code == 0


def test_the_chinese_demo_refuses_a_program_with_members_in_another_currency(
    app: Flask,
) -> None:
    with app.app_context():
        membership.enroll(db.session, membership.EnrollMember(external_id="someone"))

    result = run(app, "demo", "seed", "--locale", "zh_CN")

    assert result.exit_code == 1
    assert "the program is in USD and already has members or rewards" in result.output
    with app.app_context():
        assert get_settings(db.session).currency == "USD"
        assert tiers.list_tiers(db.session) == []


def test_demo_seed_refuses_an_unknown_locale(app: Flask) -> None:
    result = run(app, "demo", "seed", "--locale", "fr")

    assert result.exit_code == 2
    assert "Invalid value for '--locale'" in result.output
    assert "'en', 'zh_CN'" in result.output


def test_the_default_demo_stays_english_in_the_programs_currency(app: Flask) -> None:
    result = run(app, "demo", "seed")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "rule '1 point per dollar' created"
    assert "currency:" not in result.stdout
    assert "time zone:" not in result.stdout
    with app.app_context():
        assert get_settings(db.session).currency == "USD"
        assert get_settings(db.session).time_zone == "UTC"
        assert [t.name for t in tiers.list_tiers(db.session)] == ["Bronze", "Silver", "Gold"]
        assert membership.card(db.session, "cust_1001").name == "Ada Lovelace"
        assert set(db.session.scalars(sa.select(Order.currency).distinct())) == {"USD"}
        assert db.session.scalars(sa.select(Experiment.name)).one() == "Big basket bonus"
