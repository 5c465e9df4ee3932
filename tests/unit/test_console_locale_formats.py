"""How the console writes money, counts, points and dates in the reader's locale (Babel's
data): English as it always has, Simplified Chinese in its own words; money exact."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask_babel import Babel, force_locale

import loyalty.console
from loyalty.console import formatting, language

TRANSLATIONS = Path(loyalty.console.__file__).parent / "translations"
MOMENT = dt.datetime(2026, 3, 8, 14, 5, 9, tzinfo=dt.UTC)


@pytest.fixture
def request_in() -> Iterator[object]:
    """Run the body in a request of a bare app with the console's catalogs, in a locale."""
    app = Flask(__name__)
    Babel(app, default_locale="en_US", default_translation_directories=str(TRANSLATIONS))
    with app.test_request_context("/admin/"):
        yield force_locale


@pytest.mark.parametrize(
    ("locale", "minor", "currency", "text"),
    [
        ("en_US", 123456, "USD", "$1,234.56"),
        ("en_US", 1234, "JPY", "¥1,234"),
        ("zh_CN", 123400, "CNY", "¥1,234.00"),
        ("zh_CN", 1234, "JPY", "JP¥1,234"),
        ("zh_CN", 123456, "USD", "US$1,234.56"),
        ("zh_CN", -5, "CNY", "-¥0.05"),
    ],
)
def test_money_is_written_in_the_locale_with_its_currencys_digits(
    request_in, locale, minor, currency, text
):
    with request_in(locale):
        assert formatting.money(minor, currency) == text


def test_money_stays_exact_far_past_a_floats_digits(request_in):
    with request_in("zh_CN"):
        assert formatting.money(10**17 + 1, "CNY") == "¥1,000,000,000,000,000.01"


@pytest.mark.parametrize(
    ("locale", "points", "text"),
    [
        ("en_US", 1, "1 point"),
        ("en_US", 1234, "1,234 points"),
        ("zh_CN", 1, "1 积分"),
        ("zh_CN", 1234, "1,234 积分"),
        ("zh_CN", -120, "-120 积分"),
    ],
)
def test_points_are_counted_in_the_locales_words(request_in, locale, points, text):
    with request_in(locale):
        assert formatting.points(points) == text


def test_counts_and_decimals_are_grouped_for_the_locale(request_in):
    with request_in("zh_CN"):
        assert formatting.number(1234567) == "1,234,567"
        assert formatting.decimal1(1234.25) == "1,234.2"
    with request_in("en_US"):
        assert formatting.number(1234567) == "1,234,567"


def test_english_dates_stay_the_iso_dates_the_console_always_showed(request_in):
    with request_in("en_US"):
        assert formatting.day(dt.date(2026, 3, 8)) == "2026-03-08"
        assert formatting.moment(MOMENT) == "2026-03-08 14:05 UTC"
        assert formatting.moment(MOMENT, seconds=True) == "2026-03-08 14:05:09 UTC"
        assert formatting.clock(MOMENT) == "14:05"


def test_chinese_dates_are_written_in_chinese(request_in):
    with request_in("zh_CN"):
        assert formatting.day(dt.date(2026, 3, 8)) == "2026年3月8日"
        assert formatting.moment(MOMENT) == "2026年3月8日 14:05 UTC"
        assert formatting.moment(MOMENT, seconds=True) == "2026年3月8日 14:05:09 UTC"


def test_a_moment_is_shown_on_the_consoles_clock_whatever_its_zone(request_in):
    shanghai = dt.timezone(dt.timedelta(hours=8))
    late = dt.datetime(2026, 3, 9, 1, 30, tzinfo=shanghai)  # 2026-03-08 17:30 UTC
    with request_in("zh_CN"):
        assert formatting.moment(late) == "2026年3月8日 17:30 UTC"
        assert formatting.day(late) == "2026年3月8日"


def test_nothing_is_a_dash_in_every_locale(request_in):
    with request_in("zh_CN"):
        assert formatting.money(None, "CNY") == "—"
        assert formatting.moment(None) == "—"
        assert formatting.day(None) == "—"


def test_an_experiments_target_is_named_in_the_locale(request_in):
    with request_in("zh_CN"):
        assert formatting.experiment_target({"kind": "rules", "rule_ids": ["a", "b"]}) == (
            "2 条积分规则"
        )
        assert formatting.experiment_target({"kind": "automation"}) == "一个自动化"
    with request_in("en_US"):
        assert formatting.experiment_target({"kind": "rules", "rule_ids": ["a"]}) == (
            "1 earning rule"
        )


def test_outside_a_request_the_figures_are_english():
    assert formatting.money(123456, "USD") == "$1,234.56"
    assert formatting.day(dt.date(2026, 3, 8)) == "2026-03-08"


def test_in_an_app_but_outside_a_request_the_figures_are_english():
    app = Flask(__name__)
    Babel(app, locale_selector=language.select, default_translation_directories=str(TRANSLATIONS))
    with app.app_context():
        assert formatting.points(1234) == "1,234 points"
        assert formatting.money(123400, "CNY") == "CN¥1,234.00"
