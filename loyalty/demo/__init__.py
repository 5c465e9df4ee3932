"""Demo data: a few members with a history worth looking at, a crowd of shoppers with two
years of orders (so the insight page has segments and a fitted model), a finished experiment
(``experiment``), and one API key per scope. One procedure for every locale: what differs
(names, amounts, currency, time zone) is the locale's data (``english``, ``chinese``)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import secrets
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.auth.services import create_key
from loyalty.automations import services as automations
from loyalty.db import utcnow
from loyalty.demo import program
from loyalty.demo.chinese import CHINESE
from loyalty.demo.english import ENGLISH
from loyalty.demo.experiment import seed_experiment
from loyalty.demo.locale import DemoLocale, DemoMember
from loyalty.errors import Conflict
from loyalty.imports import services as imports
from loyalty.imports.orders import import_orders
from loyalty.insight import services as insight
from loyalty.members.lookup import member_by_external_id
from loyalty.members.models import Member
from loyalty.membership import services as members
from loyalty.orders import services as orders
from loyalty.orders.earning import CartLine
from loyalty.program.services import SettingsChanges, get_settings, update_settings
from loyalty.rewards import definitions as reward_definitions
from loyalty.rules import services as rules
from loyalty.rules.definitions import RuleDefinition
from loyalty.tiers import definitions as tier_definitions

LOCALES = {locale.code: locale for locale in (ENGLISH, CHINESE)}


def _seed_catalog(session: Session, locale: DemoLocale) -> Iterator[str]:
    if tier_definitions.list_tiers(session):
        yield "tiers already present"
    else:
        for tier in locale.tiers:
            tier_definitions.create_tier(session, tier)
            yield f"tier {tier.name!r} created"
    if reward_definitions.list_rewards(session):
        yield "rewards already present"
        return
    for reward in locale.rewards:
        reward_definitions.create_reward(session, reward)
        yield f"reward {reward.name!r} created"


def _seed_automations(session: Session, locale: DemoLocale) -> Iterator[str]:
    """After the members: a welcome created before them would greet every imported shopper
    (their enrolment is the import's)."""
    if automations.list_automations(session, active=None, limit=1, after=None)[0]:
        yield "automations already present"
        return
    for definition in program.automations(locale.names):
        automations.create_automation(session, definition, actor="demo")
        yield f"automation {definition.name!r} created"


def _seed_rules(session: Session, locale: DemoLocale) -> Iterator[str]:
    if rules.list_rules(session, active=None, kind=None, limit=1, after=None)[0]:
        yield "earning rules already present"
        return
    for definition in program.earning_rules(locale.names):
        fields = {
            "active": True,
            "starts_at": None,
            "ends_at": None,
            "conditions": {},
            "caps": {},
            **definition,
        }
        rules.create_rule(session, RuleDefinition.from_fields(fields), actor="demo")
        yield f"rule {definition['name']!r} created"
    update_settings(session, program.REFERRALS, actor="demo")
    yield "referrals: 500 points for the referrer, 250 for the friend"


def _seed_program(session: Session, locale: DemoLocale) -> Iterator[str]:
    """The locale's currency, set only while nothing is priced in the program's: members'
    orders and rewards' values would otherwise be in two currencies; and its time zone."""
    if locale.currency is not None and get_settings(session).currency != locale.currency:
        has_members = session.scalar(sa.select(Member.id).limit(1)) is not None
        if has_members or reward_definitions.list_rewards(session):
            raise Conflict(
                f"the program is in {get_settings(session).currency} and already has members "
                f"or rewards: seed the {locale.code} demo ({locale.currency}) into a new "
                "database"
            )
        update_settings(session, SettingsChanges(currency=locale.currency), actor="demo")
    if locale.currency is not None:
        yield f"currency: {locale.currency}"
    if locale.time_zone is not None:
        if get_settings(session).time_zone != locale.time_zone:
            update_settings(session, SettingsChanges(time_zone=locale.time_zone), actor="demo")
        yield f"time zone: {locale.time_zone}"


def _code_of(session: Session, external_id: str | None) -> str | None:
    member = member_by_external_id(session, external_id) if external_id else None
    return member.referral_code if member else None


def _birthday_today(now: dt.datetime) -> dt.date:
    # 29 February is celebrated on the 28th in other years (see jobs.grant_birthdays).
    day = 28 if (now.month, now.day) == (2, 29) else now.day
    return dt.date(1990, now.month, day)


def _seed_member(session: Session, member: DemoMember, now: dt.datetime) -> str:
    _, created = members.enroll(
        session,
        members.EnrollMember(
            external_id=member.external_id,
            name=member.name,
            email=member.email,
            referral_code=_code_of(session, member.referred_by),
            birthday=_birthday_today(now) if member.birthday_today else None,
            marketing_email=True,
        ),
        # Members since the day before their first order, which earns like the rest.
        now=now - dt.timedelta(days=max(order.days_ago for order in member.orders) + 1),
    )
    if not created:
        return f"member {member.external_id} already enrolled"
    currency = get_settings(session).currency
    for order in member.orders:
        orders.place_order(
            session,
            orders.PlaceOrder(
                order_id=f"demo-{member.external_id}-{order.days_ago}",
                external_id=member.external_id,
                currency=currency,
                lines=(CartLine(order.sku, order.category, 1, order.unit_price),),
                placed_at=now - dt.timedelta(days=order.days_ago),
            ),
            now=now,
        )
    return f"member {member.external_id} enrolled with {len(member.orders)} past orders"


def seed(
    session: Session, now: dt.datetime | None = None, locale: DemoLocale = ENGLISH
) -> Iterator[str]:
    """Create the locale's earning rules, tiers and rewards, enroll its members (once:
    re-seeding leaves their history alone) with orders in the past so the card shows
    pending and soon-expiring points, and yield lines to print, ending with fresh API keys.
    Raises Conflict when the locale's currency is not the program's and the program
    already has members or rewards."""
    now = now or utcnow()
    yield from _seed_program(session, locale)
    yield from _seed_rules(session, locale)
    yield from _seed_catalog(session, locale)
    for member in locale.members:
        yield _seed_member(session, member, now)
    yield from _seed_shoppers(session, now, locale.shopper_order_sizes)
    yield from seed_experiment(session, now, locale.experiment)
    yield from _seed_automations(session, locale)
    summary = insight.refresh(session, as_of=now)
    yield (
        f"insight: {summary.buyers} buyers in {len(summary.segments)} segments, "
        f"lifetime-value model {summary.model_status.value}"
    )
    stamp = now.strftime("%Y%m%d%H%M%S")
    yield "API keys (shown once):"
    for scope in ("checkout", "app", "admin"):
        # A random suffix: seeding twice within one second must not reuse a key name.
        _, raw = create_key(session, f"demo-{scope}-{stamp}-{secrets.token_hex(3)}", [scope])
        yield f"  {scope:<9} {raw}"


SHOPPERS = 400
HISTORY_DAYS = 730


def _shopper_orders(
    rng: random.Random,
    external_id: str,
    currency: str,
    now: dt.datetime,
    sizes: tuple[int, int, int],
) -> Iterator[list[str]]:
    """One shopper's orders as BG/NBD and Gamma-Gamma have customers behave: a purchase rate
    of their own, a chance to stop after each purchase, and an order size of their own."""
    rate = rng.gammavariate(0.8, 1 / 40)  # purchases a day while active
    stop = rng.betavariate(1.0, 3.0)  # the chance to stop after each purchase
    size = rng.gammavariate(6.0, 1 / 6.0) * rng.choice(sizes)  # minor units
    day = rng.uniform(0, HISTORY_DAYS)  # days before now of the first purchase
    n = 0
    while day > 0:
        amount = max(100, round(size * rng.uniform(0.6, 1.4)))
        placed_at = now - dt.timedelta(days=day)
        yield [external_id, f"hist-{external_id}-{n}", placed_at.isoformat(), str(amount), currency]
        n += 1
        if rng.random() < stop:
            return
        day -= rng.expovariate(rate)


def _seed_shoppers(
    session: Session, now: dt.datetime, sizes: tuple[int, int, int]
) -> Iterator[str]:
    """Shoppers with up to two years of orders from before the program, imported as history
    (no points), as a shop moving from another system would."""
    if member_by_external_id(session, "shopper_0001") is not None:
        yield "shoppers already imported"
        return
    rng = random.Random(13)  # noqa: S311 - the same crowd on every machine, not a secret
    currency = get_settings(session).currency
    people = io.StringIO()
    history = io.StringIO()
    people_out, orders_out = csv.writer(people), csv.writer(history)
    people_out.writerow(["external_id", "marketing_email"])
    orders_out.writerow(["external_id", "order_id", "placed_at", "amount", "currency"])
    for n in range(1, SHOPPERS + 1):
        external_id = f"shopper_{n:04d}"
        # Four in five signed up for the newsletter: automations' messages reach them.
        people_out.writerow([external_id, "true" if n % 5 else ""])
        orders_out.writerows(_shopper_orders(rng, external_id, currency, now, sizes))
    people.seek(0)
    history.seek(0)
    joined = imports.import_members(session, people)
    imported = import_orders(session, history)
    yield f"{joined.imported} shoppers with {imported.imported} past orders imported as history"
