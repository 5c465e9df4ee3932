"""Firing an automation whose actions are all set-based (the webhook) in the database, on
PostgreSQL: one statement inserts a firing per candidate (``INSERT ... SELECT ... ON CONFLICT
DO NOTHING RETURNING``) and, from the firings it returned, one ``automation.fired`` event each
(``outbox.emit_selected``). No member passes through Python: a first pass over a million
members that fires for most of them takes seconds, where building each firing and its payload
in Python took minutes.

The trigger's specifics are built by ``details_json`` in SQL, the same JSON that
``triggers.details`` builds in Python for the other paths (SQLite, and automations that grant
per member); a test holds the two equal for every trigger kind."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from loyalty import days
from loyalty.automations import triggers
from loyalty.automations.definitions import (
    DEFAULT_FACTOR,
    DEFAULT_MIN_PURCHASE_DAYS,
    parse_factor,
)
from loyalty.automations.models import Automation, AutomationFiring, AutomationVersion, TriggerKind
from loyalty.ledger.models import MemberBalance
from loyalty.members.models import Member
from loyalty.tiers.models import Tier
from loyalty.webhooks import outbox


def _text(value: str) -> sa.ColumnElement[str]:
    return sa.cast(sa.literal(value), sa.Text)


def _integer(value: Any) -> sa.ColumnElement[int]:
    return sa.cast(value, sa.BigInteger)


def _object(**fields: Any) -> sa.ColumnElement[Any]:
    """json_build_object of the keyword arguments, in their order."""
    return sa.func.json_build_object(
        *(part for name, value in fields.items() for part in (_text(name), value))
    )


def iso(moment: Any) -> sa.ColumnElement[str]:
    """A timestamp as Python's ``datetime.isoformat()`` writes a UTC time: microseconds only
    when there are any, and +00:00."""
    utc = sa.func.timezone("UTC", moment)
    micros = sa.cast(sa.extract("microseconds", moment), sa.BigInteger) % 1_000_000
    fraction = sa.case((micros == 0, ""), else_=sa.func.to_char(utc, ".US"))
    return sa.func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS') + fraction + "+00:00"


def _local_date(moment: Any, tz: dt.tzinfo) -> sa.ColumnElement[dt.date]:
    """The day of `moment` in the program's zone `tz` (PostgreSQL)."""
    return sa.cast(sa.func.timezone(days.zone_name(tz), moment), sa.Date)


def _half_even(
    numerator: sa.ColumnElement[int], denominator: sa.ColumnElement[int]
) -> sa.ColumnElement[int]:
    """numerator / denominator (both whole, at least 0 and above 0) rounded half to even, as
    Python's round() rounds a Fraction."""
    quotient, remainder = numerator // denominator, numerator % denominator
    up = sa.or_(
        2 * remainder > denominator, sa.and_(2 * remainder == denominator, quotient % 2 == 1)
    )
    return quotient + sa.case((up, 1), else_=0)


def _ceiling(
    numerator: sa.ColumnElement[int], denominator: sa.ColumnElement[int]
) -> sa.ColumnElement[int]:
    """numerator / denominator rounded up (numerator at least 0, denominator above 0)."""
    return (numerator + denominator - 1) // denominator


def details_json(
    kind: TriggerKind,
    trigger: Mapping[str, Any],
    due: Any,
    now: dt.datetime,
    tz: dt.tzinfo = days.UTC,
) -> sa.ColumnElement[Any]:
    """The trigger's specifics for each candidate row of `due` (the columns of
    ``triggers.due_select``), days counted in the program's zone `tz`, as a JSON expression:
    what ``triggers.details`` builds."""
    start = due.c.window_start
    if kind == TriggerKind.ENROLLED:
        return _object(delay_days=_integer(trigger["delay_days"]), enrolled_at=iso(start))
    if kind == TriggerKind.INACTIVE:
        return _object(
            last_order_at=iso(start),
            days_inactive=_integer(sa.literal(days.today(now, tz)) - _local_date(start, tz)),
        )
    if kind == TriggerKind.POINTS_EXPIRING:
        return _object(points=_integer(due.c.points), expires_at=iso(start))
    if kind == TriggerKind.BIRTHDAY:
        return _object(birthday=sa.func.to_char(due.c.birthday, "YYYY-MM-DD"))
    if kind == TriggerKind.SEGMENT_ENTERED:
        return _object(segment=_text(trigger["segment"]), entered_at=iso(start))
    if kind == TriggerKind.SEGMENT_LEFT:
        return _object(segment=_text(trigger["segment"]), left_at=iso(start))
    if kind == TriggerKind.TIER_AT_RISK:
        return _object(
            tier=due.c.tier,
            review_at=iso(start),
            qualifying_points=_integer(due.c.qualifying_points),
            points_needed=_integer(due.c.points_needed),
        )
    if kind == TriggerKind.CART_ABANDONED:
        return _object(
            after_hours=_integer(trigger["after_hours"]),
            cart=_object(
                cart_id=due.c.cart_id,
                amount=_integer(due.c.amount),
                currency=due.c.currency,
                points_to_earn=_integer(due.c.points_to_earn),
                items=due.c.cart_items,
                first_quoted_at=iso(start),
                quoted_at=iso(due.c.quoted_at),
            ),
        )
    if kind == TriggerKind.REWARD_AFFORDABLE:
        return _object(
            reward=_object(
                id=sa.cast(due.c.reward_public_id, sa.Text),
                name=due.c.reward_name,
                cost_points=_integer(due.c.reward_cost),
            )
        )
    return _repurchase_details(trigger, due, now, tz)


def _repurchase_details(
    trigger: Mapping[str, Any], due: Any, now: dt.datetime, tz: dt.tzinfo
) -> sa.ColumnElement[Any]:
    factor = parse_factor(trigger.get("factor", DEFAULT_FACTOR))
    least = trigger.get("min_purchase_days") or DEFAULT_MIN_PURCHASE_DAYS
    default_gap = _integer(trigger["default_gap_days"])
    n = _integer(due.c.purchase_days)
    span = _integer(due.c.last_day) - _integer(due.c.first_day)
    own = n >= least
    typical = sa.case((own, _half_even(span, n - 1)), else_=default_gap)
    due_after = sa.case(
        (own, _ceiling(span * factor.numerator, (n - 1) * factor.denominator)),
        else_=default_gap,
    )
    return _object(
        last_order_at=iso(due.c.window_start),
        purchase_days=n,
        typical_gap_days=typical,
        due_after_days=due_after,
        days_since_last_purchase=days.day_number(days.today(now, tz)) - _integer(due.c.last_day),
    )


def fire_in_database(
    session: Session,
    automation: Automation,
    version: AutomationVersion,
    spec: triggers.Evaluated,
    now: dt.datetime,
) -> int:
    """Fire the automation (webhook actions only) for every candidate at `now` in one
    statement: its firings, and an automation.fired event for each one this statement
    inserted (a key another worker inserted first is skipped, and not announced). The
    candidates consented to marketing (``Evaluated.marketing_only``). The caller commits.
    Returns how many fired."""
    due = triggers.candidates(spec, now).subquery("candidates")
    details = details_json(spec.kind, spec.trigger, due, now, spec.zone)
    table = AutomationFiring.__table__
    fired = (
        postgresql.insert(table)
        .from_select(
            [
                "public_id",
                "automation_id",
                "version",
                "member_id",
                "window_start",
                "fired_at",
                "details",
                "points_granted",
            ],
            # In member order, as the Python path claims: two workers never deadlock.
            sa.select(
                sa.func.gen_random_uuid(),
                sa.literal(automation.id, sa.BigInteger),
                sa.literal(version.version, sa.Integer),
                due.c.member_id,
                due.c.window_start,
                sa.literal(now, table.c.fired_at.type),
                sa.cast(details, sa.JSON),
                sa.literal(0, sa.BigInteger),
            ).order_by(due.c.member_id),
        )
        .on_conflict_do_nothing(index_elements=["automation_id", "member_id", "window_start"])
        .returning(table.c.public_id, table.c.member_id, table.c.details)
        .cte("fired")
    )
    trigger = sa.func.jsonb_build_object(_text("kind"), _text(spec.kind.value)).op("||")(
        sa.cast(fired.c.details, postgresql.JSONB)
    )
    payloads = (
        sa.select(
            sa.cast(fired.c.public_id, sa.Text).label("firing_id"),
            _object(
                id=_text(str(automation.public_id)),
                name=_text(version.name),
                version=sa.literal(version.version, sa.Integer),
            ).label("automation"),
            _object(
                member_id=Member.external_id,
                email=Member.email,
                name=Member.name,
                tier=Tier.code,
                available=_integer(MemberBalance.available),
                consent=_object(
                    marketing_email=Member.marketing_email, marketing_sms=Member.marketing_sms
                ),
            ).label("member"),
            trigger.label("trigger"),
            sa.null().label("points_granted"),
            sa.null().label("coupon"),
            sa.null().label("benefit"),
            sa.func.json_build_array().label("withheld"),
            _text(now.isoformat()).label("fired_at"),
        )
        .select_from(fired)
        .join(Member, Member.id == fired.c.member_id)
        .join(MemberBalance, MemberBalance.member_id == Member.id)
        .outerjoin(Tier, Tier.id == Member.tier_id)
    )
    return outbox.emit_selected(session, "automation.fired", payloads, now)
