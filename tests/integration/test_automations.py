"""Automations fired by the jobs pass: each trigger exactly when due on the test's clock,
conditions narrowing it, one firing per dedup key (and per dedup window), closed and
suspended members left out, and points granted through a bonus rule like any earn."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from loyalty.automations import bulk, firing, services, triggers
from loyalty.automations.models import AutomationFiring
from loyalty.automations.services import AutomationView
from loyalty.members.models import MemberStatus
from loyalty.members.segments import SavedSegment, SegmentMember
from loyalty.membership import adjustments
from loyalty.membership import services as membership
from loyalty.membership.services import MemberChanges
from loyalty.orders import earning
from loyalty.rules import services as rules
from loyalty.rules.definitions import RuleChanges
from loyalty.schemas.automations import AutomationInSchema
from loyalty.webhooks import outbox
from loyalty.webhooks.models import OutboxEvent
from tests.commands import quote_command
from tests.factories import MemberFactory, OrderFactory, RuleFactory, TierFactory

# A Wednesday, noon UTC.
T0 = dt.datetime(2031, 3, 12, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
WEBHOOK = {"type": "webhook"}


def automation(
    session: Any,
    trigger: dict[str, Any],
    *,
    actions: list[dict[str, Any]] | None = None,
    now: dt.datetime = T0 - 30 * DAY,
    **fields: Any,
) -> AutomationView:
    """An automation created at `now` (a month before T0 unless said), as the API loads it."""
    body = {"name": "Test", "trigger": trigger, "actions": actions or [WEBHOOK], **fields}
    return services.create_automation(session, AutomationInSchema().load(body), "test", now=now)


def run(session: Any, now: dt.datetime) -> int:
    return firing.fire_due(session, now=now).total


def fired(session: Any) -> list[dict[str, Any]]:
    return list(
        session.scalars(
            sa.select(OutboxEvent.payload)
            .where(OutboxEvent.type == "automation.fired")
            .order_by(OutboxEvent.id)
        )
    )


def fired_for(session: Any) -> list[str]:
    return [payload["member"]["member_id"] for payload in fired(session)]


# --- enrolled ---------------------------------------------------------------------------------


def test_an_enrolled_trigger_fires_once_its_delay_has_passed(session):
    welcome = automation(session, {"kind": "enrolled", "delay_days": 3})
    MemberFactory(external_id="c1", email="c1@example.com", name="Ada", now=T0)

    assert run(session, T0 + 3 * DAY - dt.timedelta(seconds=1)) == 0
    assert run(session, T0 + 3 * DAY) == 1

    [payload] = fired(session)
    assert payload["automation"] == {"id": str(welcome.public_id), "name": "Test", "version": 1}
    assert payload["member"] == {
        "member_id": "c1",
        "email": "c1@example.com",
        "name": "Ada",
        "tier": None,
        "available": 0,
        "consent": {"marketing_email": True, "marketing_sms": False},
    }
    assert payload["trigger"] == {
        "kind": "enrolled",
        "delay_days": 3,
        "enrolled_at": T0.isoformat(),
    }
    assert payload["points_granted"] is None
    assert payload["fired_at"] == (T0 + 3 * DAY).isoformat()


def test_a_welcome_series_fires_each_step_on_its_day(session):
    for delay in (0, 3, 7):
        automation(session, {"kind": "enrolled", "delay_days": delay}, name=f"Day {delay}")
    MemberFactory(external_id="c1", now=T0)

    counts = [run(session, T0 + days * DAY) for days in (0, 1, 3, 5, 7, 8)]

    assert counts == [1, 0, 1, 0, 1, 0]
    assert [p["automation"]["name"] for p in fired(session)] == ["Day 0", "Day 3", "Day 7"]


def test_members_enrolled_before_the_automation_existed_are_not_welcomed(session):
    MemberFactory(external_id="old", now=T0 - 40 * DAY)
    automation(session, {"kind": "enrolled", "delay_days": 0})

    assert run(session, T0) == 0


def test_running_the_job_twice_fires_once(session):
    automation(session, {"kind": "enrolled", "delay_days": 0})
    for external_id in ("c1", "c2", "c3"):
        MemberFactory(external_id=external_id, now=T0)

    assert (run(session, T0), run(session, T0), run(session, T0 + DAY)) == (3, 0, 0)
    assert sorted(fired_for(session)) == ["c1", "c2", "c3"]


def test_batches_fire_every_member_once(session):
    automation(session, {"kind": "enrolled", "delay_days": 0})
    for n in range(7):
        MemberFactory(external_id=f"m{n}", now=T0)

    assert firing.fire_due(session, now=T0, batch_size=3).total == 7
    assert sorted(fired_for(session)) == [f"m{n}" for n in range(7)]


# --- inactive ---------------------------------------------------------------------------------


def test_an_inactive_trigger_fires_after_n_days_without_an_order(session):
    automation(session, {"kind": "inactive", "days": 60})
    MemberFactory(external_id="c1", now=T0 - DAY)
    MemberFactory(external_id="never_bought", now=T0 - DAY)
    OrderFactory(order_id="o1", now=T0)

    assert run(session, T0 + 60 * DAY - dt.timedelta(seconds=1)) == 0
    assert run(session, T0 + 60 * DAY) == 1
    assert run(session, T0 + 90 * DAY) == 0

    [payload] = fired(session)
    assert payload["member"]["member_id"] == "c1"
    assert payload["trigger"] == {
        "kind": "inactive",
        "last_order_at": T0.isoformat(),
        "days_inactive": 60,
    }


def test_the_inactive_window_rolls_with_the_next_order(session):
    automation(session, {"kind": "inactive", "days": 30})
    MemberFactory(external_id="c1", now=T0 - DAY)
    OrderFactory(order_id="o1", now=T0)
    assert run(session, T0 + 30 * DAY) == 1

    OrderFactory(order_id="o2", now=T0 + 40 * DAY)

    assert run(session, T0 + 69 * DAY) == 0
    assert run(session, T0 + 70 * DAY) == 1
    assert [p["trigger"]["last_order_at"] for p in fired(session)] == [
        T0.isoformat(),
        (T0 + 40 * DAY).isoformat(),
    ]


def test_a_dedup_window_holds_back_a_firing_with_a_new_key(session):
    automation(session, {"kind": "inactive", "days": 30}, dedup_days=90)
    MemberFactory(external_id="c1", now=T0 - DAY)
    OrderFactory(order_id="o1", now=T0)
    assert run(session, T0 + 30 * DAY) == 1
    OrderFactory(order_id="o2", now=T0 + 40 * DAY)

    assert run(session, T0 + 70 * DAY) == 0  # within 90 days of the first firing
    assert run(session, T0 + 121 * DAY) == 1


# --- points_expiring ---------------------------------------------------------------------------


def test_points_expiring_fires_within_n_days_of_the_soonest_expiry(session):
    automation(session, {"kind": "points_expiring", "within_days": 14})
    MemberFactory(external_id="c1", now=T0 - DAY)
    adjustments.adjust(session, "c1", 50, "test", "ops", now=T0)
    expires = dt.datetime(2032, 3, 12, 12, tzinfo=dt.UTC)  # the program's 12 months

    assert run(session, expires - 15 * DAY) == 0
    assert run(session, expires - 14 * DAY) == 1
    assert run(session, expires - 10 * DAY) == 0

    [payload] = fired(session)
    assert payload["trigger"] == {
        "kind": "points_expiring",
        "points": 50,
        "expires_at": expires.isoformat(),
    }
    assert payload["member"]["available"] == 50


# --- birthday ----------------------------------------------------------------------------------


def test_a_birthday_fires_on_the_day_with_no_points_attached(session):
    automation(session, {"kind": "birthday"})
    MemberFactory(external_id="c1", birthday="1990-03-12", now=T0 - DAY)
    MemberFactory(external_id="c2", birthday="1990-03-13", now=T0 - DAY)

    assert run(session, T0) == 1
    assert run(session, T0 + dt.timedelta(hours=6)) == 0
    assert fired(session)[0]["trigger"] == {"kind": "birthday", "birthday": "1990-03-12"}
    assert fired(session)[0]["member"]["available"] == 0


def test_a_birthday_fires_again_the_next_year(session):
    automation(session, {"kind": "birthday"})
    MemberFactory(external_id="c1", birthday="1990-03-12", now=T0 - DAY)

    next_year = dt.datetime(2032, 3, 12, 9, tzinfo=dt.UTC)

    assert (run(session, T0), run(session, next_year)) == (1, 1)


def test_a_leap_day_birthday_fires_on_february_28_in_other_years(session):
    automation(session, {"kind": "birthday"})
    MemberFactory(external_id="c1", birthday="2000-02-29", now=T0 - DAY)

    assert run(session, dt.datetime(2031, 2, 28, 9, tzinfo=dt.UTC)) == 1
    assert run(session, dt.datetime(2032, 2, 28, 9, tzinfo=dt.UTC)) == 0
    assert run(session, dt.datetime(2032, 2, 29, 9, tzinfo=dt.UTC)) == 1


# --- repurchase_due ----------------------------------------------------------------------------


def test_repurchase_is_due_after_the_members_own_gap_times_the_factor(session):
    automation(
        session,
        {"kind": "repurchase_due", "factor": "1.5", "default_gap_days": 30},
    )
    MemberFactory(external_id="c1", now=T0 - DAY)
    for n, day in enumerate((0, 10, 20)):  # three purchase days, 10 days apart
        OrderFactory(order_id=f"o{n}", now=T0 + day * DAY)

    assert run(session, T0 + 34 * DAY) == 0
    assert run(session, T0 + 35 * DAY) == 1

    [payload] = fired(session)
    assert payload["trigger"] == {
        "kind": "repurchase_due",
        "last_order_at": (T0 + 20 * DAY).isoformat(),
        "purchase_days": 3,
        "typical_gap_days": 10,
        "due_after_days": 15,
        "days_since_last_purchase": 15,
    }


def test_repurchase_uses_the_default_gap_for_too_few_purchase_days(session):
    automation(session, {"kind": "repurchase_due", "default_gap_days": 30})
    MemberFactory(external_id="c1", now=T0 - DAY)
    OrderFactory(order_id="o1", now=T0)
    OrderFactory(order_id="o2", now=T0 + dt.timedelta(hours=1))  # the same purchase day

    assert run(session, T0 + 29 * DAY) == 0
    assert run(session, T0 + 30 * DAY) == 1
    assert fired(session)[0]["trigger"]["typical_gap_days"] == 30


# --- conditions and member status -------------------------------------------------------------


def test_metadata_conditions_narrow_the_trigger(session):
    automation(
        session, {"kind": "enrolled", "delay_days": 0}, conditions={"metadata": {"vip": True}}
    )
    MemberFactory(external_id="vip", metadata={"vip": True}, now=T0)
    MemberFactory(external_id="regular", metadata={"vip": False}, now=T0)
    MemberFactory(external_id="plain", now=T0)

    assert run(session, T0) == 1
    assert fired_for(session) == ["vip"]


def test_tier_conditions_narrow_the_trigger(session):
    TierFactory(code="silver", threshold=0)
    automation(session, {"kind": "enrolled", "delay_days": 0}, conditions={"tiers": ["silver"]})
    automation(session, {"kind": "enrolled", "delay_days": 0}, conditions={"tiers": ["gold"]})
    MemberFactory(external_id="c1", now=T0)

    assert run(session, T0) == 1
    assert fired(session)[0]["member"]["tier"] == "silver"


def test_segment_conditions_narrow_the_trigger(session):
    segment = SavedSegment(key="vips", name="VIPs", filter={"tiers": ["gold"]})
    session.add(segment)
    session.flush()
    automation(session, {"kind": "enrolled", "delay_days": 0}, conditions={"segments": ["vips"]})
    inside = MemberFactory(external_id="inside", now=T0)
    MemberFactory(external_id="outside", now=T0)
    session.add(SegmentMember(segment_id=segment.id, member_id=inside.id, entered_at=T0))
    session.flush()

    assert run(session, T0) == 1
    assert fired_for(session) == ["inside"]


@pytest.mark.parametrize("status", [MemberStatus.SUSPENDED, MemberStatus.CLOSED])
def test_suspended_and_closed_members_never_fire(session, status):
    automation(session, {"kind": "enrolled", "delay_days": 0})
    MemberFactory(external_id="c1", now=T0)
    membership.update_member(session, "c1", MemberChanges(status=status))

    assert run(session, T0) == 0
    assert session.scalar(sa.select(sa.func.count()).select_from(AutomationFiring)) == 0


def test_an_inactive_automation_never_fires(session):
    found = automation(session, {"kind": "enrolled", "delay_days": 0})
    services.deactivate_automation(session, found.public_id, "test")
    MemberFactory(external_id="c1", now=T0)

    assert run(session, T0) == 0


def test_a_new_version_does_not_fire_again_for_whom_it_fired(session):
    found = automation(session, {"kind": "birthday"})
    MemberFactory(external_id="c1", birthday="1990-03-12", now=T0 - DAY)
    assert run(session, T0) == 1

    services.update_automation(
        session, found.public_id, services.AutomationChanges(name="Happy birthday"), "test"
    )

    assert run(session, T0 + dt.timedelta(hours=1)) == 0


# --- grant_points -----------------------------------------------------------------------------


def bonus_rule(**fields: Any) -> Any:
    return RuleFactory(bonus=True, name="Welcome gift", points=200, conditions={}, **fields)


def test_granted_points_are_an_earn_through_the_rule(session):
    rule = bonus_rule()
    automation(
        session,
        {"kind": "enrolled", "delay_days": 0},
        actions=[WEBHOOK, {"type": "grant_points", "rule_id": str(rule.public_id)}],
    )
    MemberFactory(external_id="c1", now=T0)

    assert run(session, T0) == 1

    card = membership.card(session, "c1", now=T0)
    assert card.available == 200
    [earn] = [m for m in membership.history(session, "c1", 10, None).items if m.kind == "earn"]
    assert earn.points == 200
    assert earn.details["breakdown"] == [
        {
            "rule_id": str(rule.public_id),
            "version": 1,
            "name": "Welcome gift",
            "kind": "bonus",
            "points": 200,
        }
    ]
    payload = fired(session)[0]
    assert (payload["points_granted"], payload["member"]["available"]) == (200, 200)
    firing_row = session.scalars(sa.select(AutomationFiring)).one()
    assert firing_row.points_granted == 200
    assert earn.reference == f"automation:{firing_row.public_id}"


def test_an_automation_may_grant_its_own_amount(session):
    rule = bonus_rule()
    automation(
        session,
        {"kind": "enrolled", "delay_days": 0},
        actions=[{"type": "grant_points", "rule_id": str(rule.public_id), "points": 75}],
    )
    MemberFactory(external_id="c1", now=T0)

    run(session, T0)

    assert membership.card(session, "c1", now=T0).available == 75
    assert fired(session) == []  # no webhook action


def test_grants_stop_at_the_rules_budget(session):
    rule = bonus_rule(budget={"period": "lifetime", "points": 300})
    automation(
        session,
        {"kind": "enrolled", "delay_days": 0},
        actions=[WEBHOOK, {"type": "grant_points", "rule_id": str(rule.public_id)}],
    )
    for external_id in ("c1", "c2", "c3"):
        MemberFactory(external_id=external_id, now=T0)

    summary = firing.fire_due(session, now=T0)

    assert (summary.total, summary.points_granted) == (3, 300)
    assert [p["points_granted"] for p in fired(session)] == [200, 100, 0]
    usage = rules.get_rule(session, rule.public_id, now=T0).budget_usage
    assert usage is not None
    assert usage.used == 300


def test_a_grant_through_a_rule_deactivated_since_gives_nothing(session):
    rule = bonus_rule()
    automation(
        session,
        {"kind": "enrolled", "delay_days": 0},
        actions=[WEBHOOK, {"type": "grant_points", "rule_id": str(rule.public_id)}],
    )
    rules.update_rule(session, rule.public_id, RuleChanges(active=False), "test")
    MemberFactory(external_id="c1", now=T0)

    assert run(session, T0) == 1
    assert fired(session)[0]["points_granted"] == 0
    assert membership.card(session, "c1", now=T0).available == 0


def test_a_batch_that_fails_midway_leaves_nothing_and_the_next_pass_fires_it(session, monkeypatch):
    rule = bonus_rule()
    automation(
        session,
        {"kind": "enrolled", "delay_days": 0},
        actions=[WEBHOOK, {"type": "grant_points", "rule_id": str(rule.public_id)}],
    )
    MemberFactory(external_id="c1", now=T0)
    real_emit_many = outbox.emit_many

    def killed(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("worker killed")

    monkeypatch.setattr(outbox, "emit_many", killed)
    with pytest.raises(RuntimeError):
        run(session, T0)
    assert session.scalar(sa.select(sa.func.count()).select_from(AutomationFiring)) == 0
    assert membership.card(session, "c1", now=T0).available == 0

    monkeypatch.setattr(outbox, "emit_many", real_emit_many)
    assert run(session, T0) == 1
    assert membership.card(session, "c1", now=T0).available == 200


def test_a_webhook_pass_that_fails_after_writing_leaves_nothing(session, monkeypatch):
    """A webhook-only automation fires in one statement on PostgreSQL (in batches elsewhere):
    killed once its events are written, its firings go with them, and the next pass fires."""
    automation(session, {"kind": "enrolled", "delay_days": 0})
    MemberFactory(external_id="c1", now=T0)
    MemberFactory(external_id="c2", now=T0)
    real = {name: getattr(outbox, name) for name in ("emit_many", "emit_selected")}

    def killed_after(name: str) -> Any:
        def emit(*args: Any, **kwargs: Any) -> int:
            real[name](*args, **kwargs)
            raise RuntimeError("worker killed")

        return emit

    for name in real:
        monkeypatch.setattr(outbox, name, killed_after(name))
    with pytest.raises(RuntimeError):
        run(session, T0)
    assert session.scalar(sa.select(sa.func.count()).select_from(AutomationFiring)) == 0
    assert fired(session) == []

    for name, emit in real.items():
        monkeypatch.setattr(outbox, name, emit)
    assert run(session, T0) == 2
    assert sorted(fired_for(session)) == ["c1", "c2"]


@pytest.mark.postgresql_only
@pytest.mark.parametrize(
    "trigger",
    [
        {"kind": "repurchase_due", "default_gap_days": 9, "factor": "1.3", "min_purchase_days": 2},
        {"kind": "repurchase_due", "default_gap_days": 9, "min_purchase_days": 4},
        {"kind": "inactive", "days": 1},
        {"kind": "points_expiring", "within_days": 400},
        {"kind": "birthday"},
        {"kind": "enrolled", "delay_days": 0},
        {"kind": "cart_abandoned", "after_hours": 5},
    ],
    ids=lambda trigger: trigger["kind"] + (f"-{trigger['factor']}" if "factor" in trigger else ""),
)
def test_the_details_built_in_sql_are_the_ones_python_builds(session, trigger):
    """The one-statement path (bulk.details_json) and the batch path (triggers.details) write
    the same JSON: over odd gaps between purchase days (halves round to even, due days round
    up) and timestamps with and without microseconds."""
    automation(session, trigger, now=T0 - 400 * DAY)
    for n in range(12):
        member = f"c{n}"
        enrolled = T0 - (300 - n) * DAY + dt.timedelta(microseconds=n * 37_001 % 1_000_000)
        MemberFactory(external_id=member, birthday="1990-03-02", now=enrolled)
        adjustments.adjust(session, member, 10 + n, "test", "ops", now=enrolled)
        for k in range(1 + n % 5):
            placed = enrolled + (k * (n + 3) + k * k % 7) * DAY + dt.timedelta(seconds=k)
            OrderFactory(order_id=f"o{n}-{k}", member_id=member, now=placed)
        # A cart each: some quoted again (its first and last quotes differ), some bought.
        line = {"sku": f"s{n}", "quantity": 1 + n, "unit_price": 100 * n + 7}
        if n % 2:
            line["category"] = "home"
        for again in range(1 + n % 3):
            cart = {"member_id": member, "currency": "USD", "lines": [line], "cart_id": f"k{n}"}
            moment = enrolled + dt.timedelta(hours=again, microseconds=again * 1_013)
            earning.quote(session, quote_command(cart), now=moment)
        if n % 4 == 1:
            OrderFactory(order_id=f"k{n}", member_id=member, cart_id=f"k{n}", now=enrolled)
    # Before the first lots expire (in the program's 12 months) and well after the last order.
    now = T0 - 10 * DAY + dt.timedelta(hours=8, minutes=30)
    model, version = services.active_versions(session)[0]
    spec = services.evaluated(session, model, version)
    due = triggers.candidates(spec, now).subquery()
    rows = session.execute(
        sa.select(due, bulk.details_json(spec.kind, spec.trigger, due, now).label("sql"))
    ).all()

    assert rows, f"nothing due for {trigger}"
    for row in rows:
        assert row.sql == triggers.details(spec.kind, spec.trigger, row, now)


# --- reading what fired (the console's list and page) -----------------------------------------


def test_firing_counts_say_how_many_fired_in_all_and_since(session):
    welcome = automation(session, {"kind": "enrolled", "delay_days": 0})
    never = automation(session, {"kind": "birthday"}, name="Never")
    for external_id in ("c1", "c2"):
        MemberFactory(external_id=external_id, now=T0 - 10 * DAY)
    run(session, T0 - 10 * DAY)
    MemberFactory(external_id="c3", now=T0)
    run(session, T0)

    counts = services.firing_counts(session, [welcome.public_id, never.public_id], T0 - 7 * DAY)

    assert counts == {
        welcome.public_id: services.FiringCounts(total=3, recent=1),
        never.public_id: services.FiringCounts(total=0, recent=0),
    }


def test_recent_firings_come_latest_first_a_page_at_a_time(session):
    welcome = automation(session, {"kind": "enrolled", "delay_days": 0})
    for external_id in ("c1", "c2"):
        MemberFactory(external_id=external_id, now=T0 - DAY)
    run(session, T0 - DAY)
    MemberFactory(external_id="c3", now=T0)
    run(session, T0)

    first, after = services.recent_firings(session, welcome.public_id, limit=2, before=None)
    rest, end = services.recent_firings(session, welcome.public_id, limit=2, before=after)

    assert [(f.external_id, f.fired_at, f.version) for f in first[:1]] == [("c3", T0, 1)]
    assert {f.external_id for f in first[1:] + rest} == {"c1", "c2"}
    assert (len(first), len(rest), end) == (2, 1, None)
