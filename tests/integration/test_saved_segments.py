"""Saved segments: a typed filter over the member insight, tier and member attributes, and
their membership recomputed at every insight refresh, each entry and exit announced as
``member.segment_changed``; the rules and rewards that name them, and why a named one is not
deleted. On SQLite and PostgreSQL (the race on PostgreSQL only); time is the test's."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.errors import ValidationFailed
from loyalty.extensions import db
from loyalty.insight import saved_segments as segments
from loyalty.insight import services as insight
from loyalty.insight.models import MemberInsight
from loyalty.insight.saved_segments import SegmentDefinition, SegmentInUse, SegmentKeyTaken
from loyalty.insight.segment_filter import Range, SegmentFilter
from loyalty.insight.segments import Segment
from loyalty.members.models import Member, MemberStatus
from loyalty.members.segments import (
    SavedSegment,
    UnknownSegment,
    in_any_segment,
    member_segment_keys,
)
from loyalty.rewards import definitions as reward_definitions
from loyalty.rewards.definitions import RewardDefinition
from loyalty.rewards.models import RewardKind
from loyalty.rules import services as rules
from loyalty.rules.definitions import RuleDefinition
from loyalty.rules.models import RuleKind
from loyalty.webhooks.models import OutboxEvent
from tests.concurrency import race
from tests.factories import MemberFactory, OrderFactory

DAY = dt.timedelta(days=1)
T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)


def changes(session: Session) -> list[tuple[str, str, str]]:
    return [
        (p["member_id"], p["segment"], p["change"])
        for p in session.scalars(
            sa.select(OutboxEvent.payload)
            .where(OutboxEvent.type == "member.segment_changed")
            .order_by(OutboxEvent.id)
        )
    ]


def save(session: Session, key: str, **criteria: object) -> None:
    segments.create_segment(
        session, SegmentDefinition(key=key, name=key.title(), filter=SegmentFilter(**criteria))
    )


@pytest.fixture
def shoppers(session: Session) -> None:
    """big spent 300.00 over three orders, small 20.00 in one, idle nothing."""
    for external_id in ("big", "small", "idle"):
        MemberFactory(external_id=external_id, now=T0 - DAY)
    for n in range(3):
        OrderFactory(order_id=f"b{n}", member_id="big", worth=100, now=T0 + n * DAY)
    OrderFactory(order_id="s0", member_id="small", worth=20, now=T0)


def test_a_refresh_puts_the_matching_members_in_and_announces_them(session, shoppers):
    save(session, "spenders", ranges={"net_revenue": Range(min=10_000)})
    save(session, "buyers", ranges={"orders": Range(min=1)})

    insight.refresh(session, as_of=T0 + 10 * DAY)

    assert segments.get_segment(session, "spenders").members == 1
    assert segments.get_segment(session, "buyers").members == 2
    assert sorted(changes(session)) == [
        ("big", "buyers", "entered"),
        ("big", "spenders", "entered"),
        ("small", "buyers", "entered"),
    ]


def test_a_second_refresh_announces_only_who_entered_or_left(session, shoppers):
    save(session, "recent", ranges={"days_since_last_order": Range(max=5)})
    insight.refresh(session, as_of=T0 + 4 * DAY)  # big's last order 2 days ago, small's 4
    assert sorted(changes(session)) == [
        ("big", "recent", "entered"),
        ("small", "recent", "entered"),
    ]

    insight.refresh(session, as_of=T0 + 6 * DAY)  # big: 4 days, small: 6

    assert changes(session)[2:] == [("small", "recent", "left")]
    assert segments.get_segment(session, "recent").members == 1


def test_recomputing_counts_who_entered_and_who_left(session, shoppers):
    insight.refresh(session, as_of=T0 + 4 * DAY)  # big's last order 2 days ago, small's 4
    save(session, "recent", ranges={"days_since_last_order": Range(max=5)})

    first = segments.recompute_members(session, T0 + 4 * DAY)
    segments.update_segment(
        session,
        "recent",
        segments.SegmentChanges(
            filter=SegmentFilter(ranges={"days_since_last_order": Range(max=3)})
        ),
    )
    second = segments.recompute_members(session, T0 + 4 * DAY)

    assert (first.entered, first.left) == ({"recent": 2}, {"recent": 0})
    assert (second.entered, second.left) == ({"recent": 0}, {"recent": 1})
    assert len(changes(session)) == 3


def test_an_unchanged_membership_announces_nothing(session, shoppers):
    save(session, "buyers", ranges={"orders": Range(min=1)})
    insight.refresh(session, as_of=T0 + 10 * DAY)
    insight.refresh(session, as_of=T0 + 11 * DAY)
    assert len(changes(session)) == 2


def test_criteria_combine_with_and_and_lists_with_or(session, shoppers):
    save(
        session,
        "active_small",
        statuses=frozenset({MemberStatus.ACTIVE}),
        ranges={"net_revenue": Range(max=5000), "orders": Range(min=1)},
    )
    insight.refresh(session, as_of=T0 + 10 * DAY)
    assert changes(session) == [("small", "active_small", "entered")]


def test_rfm_segments_select_the_buyers_the_refresh_named_so(session, shoppers):
    insight.refresh(session, as_of=T0 + 10 * DAY)
    named = dict(
        session.execute(
            sa.select(Member.external_id, MemberInsight.segment).join(
                MemberInsight, MemberInsight.member_id == Member.id
            )
        ).all()
    )
    save(session, "theirs", rfm_segments=frozenset({named["small"], Segment.CHAMPIONS}))
    insight.refresh(session, as_of=T0 + 10 * DAY)
    expected = {m for m, s in named.items() if s in {named["small"], Segment.CHAMPIONS}}
    assert {m for m, _, _ in changes(session)} == expected


def test_member_metadata_filters_by_value(session):
    MemberFactory(external_id="vip", metadata={"vip": True, "city": "Oslo", "visits": 3})
    MemberFactory(external_id="plain", metadata={"vip": False, "city": "Bergen"})
    save(session, "vips", metadata={"vip": True})
    save(session, "oslo", metadata={"city": "Oslo", "visits": 3})
    insight.refresh(session, as_of=T0)
    assert sorted(changes(session)) == [("vip", "oslo", "entered"), ("vip", "vips", "entered")]


def test_members_in_a_segment_are_found_at_earn_time(session, shoppers):
    save(session, "buyers", ranges={"orders": Range(min=1)})
    insight.refresh(session, as_of=T0 + 10 * DAY)
    from loyalty.members.lookup import find_member

    big = find_member(session, "big")
    idle = find_member(session, "idle")
    assert member_segment_keys(session, big.id) == {"buyers"}
    assert in_any_segment(session, big.id, ["buyers", "other"])
    assert not in_any_segment(session, idle.id, ["buyers"])


def test_deleting_a_segment_lets_its_members_go_and_keeps_its_key(session, shoppers):
    save(session, "buyers", ranges={"orders": Range(min=1)})
    insight.refresh(session, as_of=T0 + 10 * DAY)
    segments.delete_segment(session, "buyers", now=T0 + 11 * DAY)

    assert sorted(changes(session)[2:]) == [("big", "buyers", "left"), ("small", "buyers", "left")]
    with pytest.raises(segments.SegmentNotFound):
        segments.get_segment(session, "buyers")
    with pytest.raises(SegmentKeyTaken):
        save(session, "buyers", ranges={"orders": Range(min=1)})
    insight.refresh(session, as_of=T0 + 12 * DAY)
    assert len(changes(session)) == 4


@pytest.mark.parametrize(
    ("criteria", "field"),
    [
        ({}, "filter._schema"),
        ({"ranges": {"recency_score": Range(min=0)}}, "filter.recency_score"),
        ({"ranges": {"recency_score": Range(min=4, max=2)}}, "filter.recency_score"),
        ({"ranges": {"probability_alive": Range(max=1.5)}}, "filter.probability_alive"),
        ({"ranges": {"orders": Range(min=1.5)}}, "filter.orders"),
        ({"ranges": {"orders": Range()}}, "filter.orders"),
        ({"ranges": {"net_revenue": Range(min=float("nan"))}}, "filter.net_revenue"),
        ({"metadata": {"x": 1.5}}, "filter.metadata"),
    ],
)
def test_a_filter_is_validated_strictly(criteria, field):
    with pytest.raises(ValidationFailed) as raised:
        SegmentFilter(**criteria)
    assert field in raised.value.extra["errors"]


def test_an_unknown_tier_is_refused(session):
    with pytest.raises(ValidationFailed):
        save(session, "golds", tiers=frozenset({"gold"}))


def test_the_stored_filter_reads_back_the_same(session):
    f = SegmentFilter(
        rfm_segments=frozenset({Segment.CHAMPIONS}),
        ranges={"probability_alive": Range(min=0.5)},
        metadata={"vip": True},
    )
    assert SegmentFilter.from_json(f.as_json()) == f
    with pytest.raises(ValidationFailed):
        SegmentFilter.from_json({**f.as_json(), "colour": "red"})


# --- what names a segment, and deleting it ------------------------------------------------


def bonus_for(key: str) -> RuleDefinition:
    return RuleDefinition(
        kind=RuleKind.BONUS,
        name=f"{key} bonus",
        config={"points": 50},
        conditions={"segments": [key]},
    )


def test_a_rule_or_reward_may_name_only_live_saved_segments(session):
    save(session, "buyers", ranges={"orders": Range(min=1)})
    rules.create_rule(session, bonus_for("buyers"), None)

    with pytest.raises(UnknownSegment) as raised:
        rules.create_rule(session, bonus_for("loyal"), None)  # an RFM name, saved by no one
    assert raised.value.extra["errors"] == {
        "conditions.segments": ["No saved segment with key 'loyal'."]
    }
    reward = RewardDefinition(
        name="Tote", kind=RewardKind.PRODUCT, cost_points=100, segments=("buyers", "gone")
    )
    with pytest.raises(UnknownSegment):
        reward_definitions.create_reward(session, reward)


def test_deleting_a_segment_a_rule_names_is_refused_naming_the_rule(session):
    save(session, "buyers", ranges={"orders": Range(min=1)})
    rule = rules.create_rule(session, bonus_for("buyers"), None)

    with pytest.raises(SegmentInUse) as raised:
        segments.delete_segment(session, "buyers")
    assert raised.value.extra["used_by"] == [
        {"type": "rule", "id": str(rule.public_id), "name": "buyers bonus"}
    ]
    assert segments.get_segment(session, "buyers").key == "buyers"


@pytest.mark.postgresql_only
@pytest.mark.committed
def test_a_rule_naming_a_segment_and_its_deletion_at_once_never_both_succeed(app):
    """Without the segment's row lock both could pass their check (the rule sees the segment
    live, the deletion sees no rule) and leave a rule limited to a deleted segment."""
    rounds = 8
    with app.app_context():
        for n in range(rounds):
            save(db.session, f"s{n}", ranges={"orders": Range(min=1)})

    outcomes = []
    for n in range(rounds):
        key = f"s{n}"

        def work(racer: int, key: str = key) -> object:
            if racer == 0:
                return rules.create_rule(db.session, bonus_for(key), None)
            return segments.delete_segment(db.session, key)

        created, deleted = race(app, 2, work)
        outcomes.append((type(created).__name__, type(deleted).__name__))

    assert set(outcomes) <= {("RuleView", "SegmentInUse"), ("UnknownSegment", "NoneType")}
    with app.app_context():
        live = set(
            db.session.scalars(sa.select(SavedSegment.key).where(SavedSegment.deleted_at.is_(None)))
        )
        named = {
            key
            for rule in rules.list_rules(db.session, active=None, kind=None, limit=200, after=None)[
                0
            ]
            for key in rule.current.conditions.get("segments", ())
        }
    assert named <= live
