"""The pure earning arithmetic of loyalty/rules/policy.py: how a cart or an event turns into
points under a set of rules, and how refunds give points back.

Every rule here reads as the documented order of application: spend rules first, then
multipliers on what spend rules earned, then bonuses; each contribution floored once, then
capped per order and by what is left of its per-member period cap.
"""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty.rules import policy
from loyalty.rules.policy import Conditions, Contribution, Line, MemberContext, Rule

T0 = dt.datetime(2025, 3, 10, 9, 30, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
NOBODY = MemberContext()


def make_rule(kind: str, rule_id: str, priority: int = 100, version: int = 1, **kw) -> Rule:
    """A rule as the policy sees it, named after its id, without conditions unless given."""
    return Rule(
        rule_id=rule_id,
        version=version,
        name=rule_id,
        kind=kind,
        priority=priority,
        conditions=kw.pop("conditions", Conditions()),
        **kw,
    )


def spend(rule_id="spend", points=1, per_amount=100, **kw) -> Rule:
    return make_rule("spend", rule_id, points=points, per_amount=per_amount, **kw)


def multiplier(rule_id="mult", factor="2", **kw) -> Rule:
    return make_rule("multiplier", rule_id, factor=Fraction(factor), **kw)


def bonus(rule_id="bonus", points=50, **kw) -> Rule:
    return make_rule("bonus", rule_id, points=points, **kw)


def event(rule_id="review", event_type="review", points=10, **kw) -> Rule:
    return make_rule("event", rule_id, points=points, event_type=event_type, **kw)


def line(sku="tee", price=1000, quantity=1, category=None) -> Line:
    return Line(sku=sku, category=category, quantity=quantity, unit_price=price)


def earn(rules, lines, reduction=0, context=NOBODY, when=T0):
    return policy.order_points(rules, lines, reduction, context, when)


def by_rule(breakdown: list[Contribution]) -> dict[str, int]:
    return {c.rule_id: c.points for c in breakdown}


# --- allocate ------------------------------------------------------------------------------


def test_allocate_splits_proportionally_when_it_divides_evenly():
    assert policy.allocate(100, [1, 3]) == [25, 75]


def test_allocate_gives_the_remainder_to_the_largest_remainders():
    # 10 over [1, 1, 1]: 3.33 each; one unit left goes to the first (ties: earlier weight).
    assert policy.allocate(10, [1, 1, 1]) == [4, 3, 3]
    # 10 over [1, 2]: 3.33 and 6.67; the larger remainder (0.67) gets the unit.
    assert policy.allocate(10, [1, 2]) == [3, 7]


def test_allocate_over_zero_weights_gives_nothing():
    assert policy.allocate(7, [0, 0]) == [0, 0]


def test_allocate_gives_nothing_to_a_zero_weight():
    assert policy.allocate(9, [0, 5, 4]) == [0, 5, 4]


@given(
    total=st.integers(min_value=0, max_value=10**12),
    weights=st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=30),
)
def test_allocate_sums_exactly_and_each_share_is_within_one_of_its_exact_share(total, weights):
    shares = policy.allocate(total, weights)
    weight_sum = sum(weights)
    if weight_sum == 0:
        assert shares == [0] * len(weights)
        return
    assert sum(shares) == total
    for share, weight in zip(shares, weights, strict=True):
        exact = Fraction(total * weight, weight_sum)
        assert exact - 1 < share < exact + 1
        assert share >= 0


# --- net_amounts ---------------------------------------------------------------------------


def test_net_amounts_without_reduction_are_the_gross_amounts():
    assert policy.net_amounts([line(price=1000, quantity=2), line("mug", 500)], 0) == [2000, 500]


def test_net_amounts_share_the_reduction_proportionally():
    assert policy.net_amounts([line(price=3000), line("mug", 1000)], 400) == [2700, 900]


def test_net_amounts_never_go_below_zero_when_the_reduction_exceeds_the_cart():
    assert policy.net_amounts([line(price=300), line("mug", 100)], 10_000) == [0, 0]


@given(
    prices=st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=10),
    reduction=st.integers(min_value=0, max_value=10**8),
)
def test_net_amounts_add_up_to_the_cart_minus_the_reduction(prices, reduction):
    lines = [line(f"sku{i}", price) for i, price in enumerate(prices)]
    nets = policy.net_amounts(lines, reduction)
    assert sum(nets) == max(sum(prices) - reduction, 0)
    assert all(0 <= net <= price for net, price in zip(nets, prices, strict=True))


# --- spend rules ---------------------------------------------------------------------------


def test_spend_rule_earns_points_per_amount_spent():
    points, breakdown = earn([spend(points=1, per_amount=100)], [line(price=2550, quantity=2)])
    assert points == 51
    assert breakdown == [Contribution("spend", 1, "spend", "spend", 51)]


def test_spend_rule_floors_once_over_the_whole_order_not_per_line():
    # 150 + 150 = 300 -> 3 points; floored per line it would be 1 + 1 = 2.
    points, _ = earn([spend(points=1, per_amount=100)], [line("a", 150), line("b", 150)])
    assert points == 3


def test_spend_rule_earns_on_what_is_left_after_the_reduction():
    points, _ = earn([spend(points=1, per_amount=100)], [line(price=10_000)], reduction=2_550)
    assert points == 74


def test_spend_rule_with_skus_earns_only_on_matching_lines():
    rule = spend(points=2, per_amount=100, conditions=Conditions(skus=frozenset({"tee"})))
    points, _ = earn([rule], [line("tee", 1000), line("mug", 5000)])
    assert points == 20


def test_spend_rule_with_categories_earns_only_on_lines_of_those_categories():
    rule = spend(conditions=Conditions(categories=frozenset({"apparel"})))
    points, _ = earn(
        [rule], [line("tee", 1000, category="apparel"), line("mug", 5000, category="home")]
    )
    assert points == 10


def test_spend_rule_below_its_minimum_amount_earns_nothing():
    rule = spend(conditions=Conditions(min_amount=5000))
    assert earn([rule], [line(price=4999)]) == (0, [])
    assert earn([rule], [line(price=5000)])[0] == 50


def test_minimum_amount_is_measured_after_the_reduction():
    rule = spend(conditions=Conditions(min_amount=5000))
    assert earn([rule], [line(price=6000)], reduction=1001) == (0, [])


def test_contributions_of_zero_are_left_out_of_the_breakdown():
    assert earn([spend(per_amount=100)], [line(price=99)]) == (0, [])


def test_two_spend_rules_each_contribute_separately():
    points, breakdown = earn(
        [spend("base", points=1, per_amount=100), spend("promo", points=1, per_amount=200)],
        [line(price=1000)],
    )
    assert points == 15
    assert by_rule(breakdown) == {"base": 10, "promo": 5}


# --- multipliers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factor", "extra"),
    [("2", 101), ("1.5", 50), ("1.25", 25), ("1.0001", 0), ("3.3333", 235)],
)
def test_multiplier_adds_floor_of_base_times_factor_minus_one(factor, extra):
    # The spend rule earns 101; a multiplier adds floor(101 * (factor - 1)).
    points, breakdown = earn(
        [spend(points=1, per_amount=100), multiplier(factor=factor)], [line(price=10_100)]
    )
    assert by_rule(breakdown).get("mult", 0) == extra
    assert points == 101 + extra


def test_multiplier_factors_stay_exact_fractions_where_a_float_would_round_wrong():
    # 0.1 is not exact in binary: 1.1 * 10 == 11.000000000000002 as floats, and with
    # floor((1.1 - 1) * 10) a float gives 0.9999999999999998 -> 0 instead of 1.
    points, breakdown = earn(
        [spend(points=1, per_amount=100), multiplier(factor="1.1")], [line(price=1000)]
    )
    assert by_rule(breakdown) == {"spend": 10, "mult": 1}
    assert points == 11


def test_multiplier_applies_only_to_matching_lines():
    apparel = Conditions(categories=frozenset({"apparel"}))
    points, breakdown = earn(
        [spend(points=1, per_amount=100), multiplier(factor="2", conditions=apparel)],
        [line("tee", 3000, category="apparel"), line("mug", 5000, category="home")],
    )
    assert by_rule(breakdown) == {"spend": 80, "mult": 30}
    assert points == 110


def test_multiplier_builds_on_each_spend_rule_over_the_lines_both_match():
    tees = Conditions(skus=frozenset({"tee"}))
    mugs = Conditions(skus=frozenset({"mug"}))
    points, breakdown = earn(
        [
            spend("all", points=1, per_amount=100),
            spend("mugs", points=5, per_amount=100, conditions=mugs),
            multiplier(factor="1.5", conditions=tees),
        ],
        [line("tee", 1000), line("mug", 1000)],
    )
    # The multiplier matches tees only: it builds on "all" over the tee (10), not on the mugs rule.
    assert by_rule(breakdown) == {"all": 20, "mugs": 50, "mult": 5}
    assert points == 75


def test_multiplier_without_spend_rules_adds_nothing():
    assert earn([multiplier(factor="3")], [line(price=10_000)]) == (0, [])


def test_multiplier_below_its_minimum_amount_adds_nothing():
    rule = multiplier(factor="2", conditions=Conditions(min_amount=10_000))
    points, breakdown = earn([spend(), rule], [line(price=9_999)])
    assert by_rule(breakdown) == {"spend": 99}
    assert points == 99


def test_multiplier_is_floored_once_over_all_matching_lines():
    # Base 3 from three lines of 100: 1.5x adds floor(1.5) = 1 over the order, where per
    # line it would be floor(0.5) * 3 = 0.
    points, breakdown = earn(
        [spend(points=1, per_amount=100), multiplier(factor="1.5")],
        [line("a", 100), line("b", 100), line("c", 100)],
    )
    assert by_rule(breakdown)["mult"] == 1
    assert points == 4


# --- bonus rules ---------------------------------------------------------------------------


def test_bonus_gives_its_fixed_points_to_any_order():
    assert earn([bonus(points=50)], [line(price=1)]) == (
        50,
        [Contribution("bonus", 1, "bonus", "bonus", 50)],
    )


def test_first_order_bonus_applies_to_the_first_order_only():
    rule = bonus(points=200, conditions=Conditions(first_order=True))
    assert earn([rule], [line()], context=MemberContext(first_order=True))[0] == 200
    assert earn([rule], [line()], context=MemberContext(first_order=False)) == (0, [])


def test_minimum_amount_bonus_needs_the_order_to_reach_it_after_the_reduction():
    rule = bonus(points=100, conditions=Conditions(min_amount=5000))
    assert earn([rule], [line(price=5000)])[0] == 100
    assert earn([rule], [line(price=5000)], reduction=1) == (0, [])


def test_sku_bonus_needs_the_sku_in_the_cart():
    rule = bonus(points=30, conditions=Conditions(skus=frozenset({"mug"})))
    assert earn([rule], [line("tee"), line("mug")])[0] == 30
    assert earn([rule], [line("tee")]) == (0, [])


def test_category_bonus_needs_a_line_of_the_category():
    rule = bonus(points=30, conditions=Conditions(categories=frozenset({"home"})))
    assert earn([rule], [line("tee", category="apparel"), line("mug", category="home")])[0] == 30
    assert earn([rule], [line("tee", category="apparel")]) == (0, [])


def test_bonus_does_not_count_towards_multipliers():
    points, breakdown = earn([bonus(points=100), multiplier(factor="2")], [line(price=1000)])
    assert by_rule(breakdown) == {"bonus": 100}
    assert points == 100


# --- tiers and active window ---------------------------------------------------------------


def test_tier_condition_applies_to_members_of_those_tiers_only():
    rule = spend(conditions=Conditions(tiers=frozenset({"gold", "platinum"})))
    assert earn([rule], [line(price=1000)], context=MemberContext(tier="gold"))[0] == 10
    assert earn([rule], [line(price=1000)], context=MemberContext(tier="silver")) == (0, [])
    assert earn([rule], [line(price=1000)], context=MemberContext(tier=None)) == (0, [])


def test_tier_condition_restricts_bonus_and_event_rules_too():
    gold = Conditions(tiers=frozenset({"gold"}))
    silver = MemberContext(tier="silver")
    assert earn([bonus(conditions=gold)], [line()], context=silver) == (0, [])
    assert policy.event_points([event(conditions=gold)], "review", silver, T0) == (0, [])


def test_rule_is_active_from_its_start_inclusive_to_its_end_exclusive():
    rule = spend(starts_at=T0, ends_at=T0 + DAY)
    cart = [line(price=1000)]
    assert earn([rule], cart, when=T0 - dt.timedelta(microseconds=1)) == (0, [])
    assert earn([rule], cart, when=T0)[0] == 10
    assert earn([rule], cart, when=T0 + DAY - dt.timedelta(microseconds=1))[0] == 10
    assert earn([rule], cart, when=T0 + DAY) == (0, [])


def test_open_ended_windows_are_active_on_the_open_side():
    cart = [line(price=1000)]
    assert earn([spend(starts_at=T0)], cart, when=T0 + 1000 * DAY)[0] == 10
    assert earn([spend(ends_at=T0)], cart, when=T0 - 1000 * DAY)[0] == 10


def test_an_inactive_spend_rule_gives_multipliers_nothing_to_build_on():
    points, breakdown = earn(
        [spend(ends_at=T0), multiplier(factor="2")], [line(price=1000)], when=T0
    )
    assert (points, breakdown) == (0, [])


# --- priority and order --------------------------------------------------------------------


def test_breakdown_lists_spend_then_multiplier_then_bonus_by_priority_then_id():
    rules = [
        bonus("b-late", points=1, priority=1),
        multiplier("m", factor="2", priority=0),
        spend("s-2", priority=50),
        spend("s-1b", priority=10),
        spend("s-1a", priority=10),
    ]
    _, breakdown = earn(rules, [line(price=1000)])
    assert [c.rule_id for c in breakdown] == ["s-1a", "s-1b", "s-2", "m", "b-late"]


@given(st.permutations(range(5)))
def test_the_result_does_not_depend_on_the_order_rules_are_given_in(order):
    rules = [
        spend("s1", points=3, per_amount=700, priority=5),
        spend("s2", points=1, per_amount=100, priority=5),
        multiplier("m1", factor="1.25", priority=1),
        bonus("b1", points=7, conditions=Conditions(skus=frozenset({"mug"}))),
        bonus("b2", points=9, cap_per_order=4),
    ]
    cart = [line("tee", 1234, 3, "apparel"), line("mug", 999)]
    expected = earn(rules, cart, reduction=321)
    assert earn([rules[i] for i in order], cart, reduction=321) == expected


# --- caps ----------------------------------------------------------------------------------


def test_per_order_cap_limits_a_rule_contribution():
    points, breakdown = earn(
        [spend(points=1, per_amount=100, cap_per_order=25)], [line(price=10_000)]
    )
    assert points == 25
    assert by_rule(breakdown) == {"spend": 25}


def test_multiplier_builds_on_what_a_capped_spend_rule_actually_earned():
    # The spend rule would earn 100 but is capped at 10: x2 doubles the 10, not the 100.
    points, breakdown = earn(
        [spend(points=1, per_amount=100, cap_per_order=10), multiplier(factor="2")],
        [line(price=10_000)],
    )
    assert by_rule(breakdown) == {"spend": 10, "mult": 10}
    assert points == 20


def test_multiplier_adds_nothing_once_the_spend_rule_member_cap_is_used_up():
    context = MemberContext(remaining_caps={"spend": 0})
    assert earn([spend(), multiplier(factor="2")], [line(price=10_000)], context=context) == (
        0,
        [],
    )


def test_per_order_cap_applies_to_multipliers_and_bonuses():
    points, breakdown = earn(
        [spend(), multiplier(factor="3", cap_per_order=50), bonus(points=500, cap_per_order=20)],
        [line(price=10_000)],
    )
    assert by_rule(breakdown) == {"spend": 100, "mult": 50, "bonus": 20}
    assert points == 170


def test_remaining_member_cap_limits_a_rule_to_what_is_left_of_its_period():
    context = MemberContext(remaining_caps={"spend": 30})
    points, _ = earn([spend()], [line(price=10_000)], context=context)
    assert points == 30


def test_an_exhausted_member_cap_leaves_the_rule_out():
    context = MemberContext(remaining_caps={"spend": 0})
    assert earn([spend()], [line(price=10_000)], context=context) == (0, [])


def test_a_negative_remaining_cap_counts_as_exhausted():
    context = MemberContext(remaining_caps={"bonus": -5})
    assert earn([bonus()], [line()], context=context) == (0, [])


def test_the_tighter_of_order_cap_and_member_cap_wins():
    rule = spend(cap_per_order=40)
    assert (
        earn([rule], [line(price=10_000)], context=MemberContext(remaining_caps={"spend": 60}))[0]
        == 40
    )
    assert (
        earn([rule], [line(price=10_000)], context=MemberContext(remaining_caps={"spend": 15}))[0]
        == 15
    )


def test_member_caps_apply_to_their_own_rule_only():
    context = MemberContext(remaining_caps={"other": 0})
    assert earn([spend()], [line(price=1000)], context=context)[0] == 10


# --- event points --------------------------------------------------------------------------


def test_event_rules_pay_their_points_for_their_event_type():
    points, breakdown = policy.event_points(
        [event("review", "review", 25), event("bday", "birthday", 500)], "review", NOBODY, T0
    )
    assert points == 25
    assert breakdown == [Contribution("review", 1, "review", "event", 25)]


def test_event_of_a_type_without_rules_earns_nothing():
    assert policy.event_points([event()], "birthday", NOBODY, T0) == (0, [])


def test_several_event_rules_for_one_type_all_pay_in_priority_order():
    points, breakdown = policy.event_points(
        [event("b", points=5, priority=2), event("a", points=3, priority=1)],
        "review",
        NOBODY,
        T0,
    )
    assert points == 8
    assert [c.rule_id for c in breakdown] == ["a", "b"]


def test_event_rules_respect_their_window_and_caps():
    window = event(starts_at=T0 + DAY)
    assert policy.event_points([window], "review", NOBODY, T0) == (0, [])
    capped = event(points=100, cap_per_order=40)
    assert policy.event_points([capped], "review", NOBODY, T0)[0] == 40
    spent = MemberContext(remaining_caps={"review": 0})
    assert policy.event_points([event()], "review", spent, T0) == (0, [])


def test_order_rules_never_pay_for_events_and_event_rules_never_pay_for_orders():
    assert policy.event_points([bonus(), spend()], "review", NOBODY, T0) == (0, [])
    assert earn([event()], [line(price=10_000)]) == (0, [])


# --- refund_share --------------------------------------------------------------------------


def test_refund_share_is_proportional_to_the_money_refunded():
    assert policy.refund_share(100, 0, 2500, 10_000) == 25


def test_refund_share_floors_each_step_cumulatively():
    # Thirds of 100 points: 33, then 33 (66 so far), then the rest: 34.
    assert policy.refund_share(100, 0, 1, 3) == 33
    assert policy.refund_share(100, 1, 2, 3) == 33
    assert policy.refund_share(100, 2, 3, 3) == 34


def test_refund_share_of_an_order_with_nothing_to_measure_gives_everything_once():
    assert policy.refund_share(40, 0, 1, 0) == 40
    assert policy.refund_share(40, 0, 0, 0) == 0


@given(
    data=st.data(),
    total=st.integers(min_value=0, max_value=10**9),
    base=st.integers(min_value=1, max_value=10**9),
)
def test_any_sequence_of_partial_refunds_gives_back_the_floor_of_the_refunded_share(
    data, total, base
):
    refunded, given_back = 0, 0
    while refunded < base:
        step = data.draw(st.integers(min_value=1, max_value=base - refunded))
        share = policy.refund_share(total, refunded, refunded + step, base)
        assert share >= 0
        refunded += step
        given_back += share
        assert given_back == total * refunded // base
        if data.draw(st.booleans()):
            break
    if refunded == base:
        assert given_back == total


@given(
    total=st.integers(min_value=0, max_value=10**9),
    base=st.integers(min_value=1, max_value=10**6),
)
def test_a_full_refund_in_one_step_gives_back_exactly_the_total(total, base):
    assert policy.refund_share(total, 0, base, base) == total
