"""The console in each language in a real headless Chromium: a browser asking for Chinese
reads the dashboard and a member page in Chinese, the switch in the header turns it to
English (and back) and the choice holds over the browser's Accept-Language."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from loyalty.extensions import db
from loyalty.membership import adjustments
from loyalty.program.services import update_settings
from tests.browser.conftest import CHROMIUM, CHROMIUM_FLAGS, shot, sign_in
from tests.commands import program_changes
from tests.factories import ApiKeyFactory, MemberFactory

pytestmark = pytest.mark.committed


@pytest.fixture
def seeded(live_app: tuple[Flask, str]) -> str:
    app, _ = live_app
    with app.app_context():
        session = db.session()
        update_settings(session, program_changes({"pending_days": 0, "currency": "CNY"}))
        MemberFactory(external_id="cust_42", email="grace@example.com", name="Grace Hopper")
        adjustments.adjust(session, "cust_42", 1234, "opening balance", "seed")
        key: str = ApiKeyFactory(name="ops-admin", scopes=("admin",))
    return key


def open_page(locale: str) -> Iterator[Any]:
    """A page in a browser whose language (Accept-Language, navigator.language) is `locale`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(10000)
        yield page
        context.close()
        browser.close()


@pytest.fixture
def chinese_browser() -> Iterator[Any]:
    yield from open_page("zh-CN")


@pytest.fixture
def english_browser() -> Iterator[Any]:
    yield from open_page("en-US")


def test_a_chinese_browser_reads_the_console_in_chinese_until_it_switches(
    live_app, seeded, chinese_browser
):
    _, base = live_app
    page = chinese_browser
    sign_in(page, base, seeded)

    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator("h1").inner_text() == "仪表盘"
    assert page.locator("#liability-available").inner_text() == "1,234"
    assert page.locator("h2").first.inner_text() == "每日积分，最近 90 天"  # noqa: RUF001
    assert "¥" in page.locator(".tiles").inner_text()  # the liability's value, in CNY
    shot(page, "dashboard-zh")

    page.goto(f"{base}/admin/members/cust_42")
    assert page.locator(".tile .label").first.inner_text() == "可用"
    assert page.locator("#balance-available").inner_text() == "1234"
    assert "年" in page.locator("#history td").first.inner_text()  # 2026年3月8日 14:05 UTC
    assert page.get_by_role("button", name="调整").is_visible()
    shot(page, "member-zh")

    page.click("#language-en_US")
    assert page.url.endswith("/admin/members/cust_42")
    assert page.locator("html").get_attribute("lang") == "en-US"
    assert page.locator(".tile .label").first.inner_text() == "Available"
    assert page.get_by_role("button", name="Adjust").is_visible()

    page.goto(f"{base}/admin/")  # the choice holds over the browser's Accept-Language
    assert page.locator("h1").inner_text() == "Dashboard"


def test_an_english_browser_reads_english_and_may_switch_to_chinese(
    live_app, seeded, english_browser
):
    _, base = live_app
    page = english_browser
    sign_in(page, base, seeded)

    assert page.locator("html").get_attribute("lang") == "en-US"
    assert page.locator("h1").inner_text() == "Dashboard"
    page.goto(f"{base}/admin/members/cust_42")
    assert page.locator(".tile .label").first.inner_text() == "Available"
    assert "-" in page.locator("#history td").first.inner_text()  # 2026-03-08 14:05 UTC
    shot(page, "member-en")

    page.click("#language-zh_CN")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator(".tile .label").first.inner_text() == "可用"
    page.goto(f"{base}/admin/")
    assert page.locator("h1").inner_text() == "仪表盘"
