"""How the console draws and writes an experiment's results: the interval chart's scale,
zero line and colours, and the figures (rates, differences, money means, p-values)."""

from __future__ import annotations

import pytest

from loyalty.console import charts, formatting

LEFT = charts.INTERVAL_LEFT + 8  # where the scale starts, inset
RIGHT = charts.INTERVAL_WIDTH - charts.INTERVAL_RIGHT - 8


def test_the_scale_spans_every_interval_and_zero():
    chart = charts.interval_chart([("a", 0.1, -0.05, 0.25), ("b", 0.3, 0.2, 0.45)])

    assert (chart.lowest, chart.highest) == (-0.05, 0.45)
    a, b = chart.rows
    assert a.x_low == LEFT
    assert b.x_high == RIGHT
    assert chart.zero_x == pytest.approx(LEFT + 0.05 / 0.5 * (RIGHT - LEFT), abs=0.1)
    assert a.x_low < chart.zero_x < a.x_value < a.x_high
    assert b.y > a.y


def test_zero_is_on_the_scale_even_when_every_interval_is_above_it():
    chart = charts.interval_chart([("a", 3.0, 1.0, 5.0)])

    assert (chart.lowest, chart.highest) == (0.0, 5.0)
    assert chart.zero_x == LEFT


@pytest.mark.parametrize(
    ("interval", "colour"),
    [
        ((0.2, 0.1, 0.3), charts.AHEAD),
        ((-0.2, -0.3, -0.1), charts.BEHIND),
        ((0, -1, 1), charts.UNSURE),
    ],
)
def test_a_bar_is_coloured_by_which_side_of_zero_the_interval_lies(interval, colour):
    (row,) = charts.interval_chart([("a", *interval)]).rows

    assert row.colour == colour


def test_an_undefined_estimate_is_a_row_without_a_bar():
    chart = charts.interval_chart([("a", None, None, None), ("b", 1.0, 0.5, 1.5)])

    undefined, defined = chart.rows
    assert (undefined.x_value, undefined.x_low, undefined.x_high) == (None, None, None)
    assert (chart.lowest, chart.highest) == (0.0, 1.5)
    assert defined.x_high == RIGHT


def test_nothing_but_zeros_still_has_a_scale():
    chart = charts.interval_chart([("a", 0.0, 0.0, 0.0)])

    assert (chart.lowest, chart.highest) == (0.0, 1.0)


def test_rates_and_their_differences_are_written_as_percentages():
    assert formatting.rate(0.1234) == "12.3%"
    assert formatting.rate_difference(0.021) == "+2.1 pp"
    assert formatting.rate_difference(-0.004) == "-0.4 pp"
    assert formatting.relative(0.25) == "+25.0%"
    assert formatting.rate(None) == formatting.relative(None) == "—"


def test_a_mean_of_money_is_rounded_half_up_to_the_minor_unit():
    assert formatting.money_mean(1333.33, "USD") == "$13.33"
    assert formatting.money_mean(2.5, "USD", signed=True) == "+$0.03"
    assert formatting.money_mean(-455.6, "USD", signed=True) == "-$4.56"
    assert formatting.money_mean(0.2, "USD", signed=True) == "$0.00"
    assert formatting.money_mean(1234.4, "JPY") == "¥1,234"


def test_a_p_value_below_a_thousandth_is_only_said_to_be_that_small():
    assert formatting.p_value(0.0342) == "p = 0.034"
    assert formatting.p_value(4e-9) == "p < 0.001"
    assert formatting.p_value(None) == "p —"
