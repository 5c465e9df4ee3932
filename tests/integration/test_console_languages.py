"""The console in English and Simplified Chinese: every string a template, form or view
shows is in the catalogs and translated, the compiled catalog is in step with its source, the
language follows the reader's choice or the browser's, and a Chinese page leaks no English
sentence. API errors stay English."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from loyalty.console import automation_forms, insight
from loyalty.extensions import db
from loyalty.insight import segments
from loyalty.membership import adjustments
from loyalty.schemas.automations import TriggerSchema
from tests.console import csrf_token, sign_in
from tests.factories import ApiKeyFactory, MemberFactory
from tests.helpers import services

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "loyalty" / "console" / "translations"
CHINESE = TRANSLATIONS / "zh_Hans_CN" / "LC_MESSAGES"
ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}


def _key(message_id: str | tuple[str, ...]) -> str:
    return message_id if isinstance(message_id, str) else message_id[0]


def _text(string: str | tuple[str, ...] | list[str]) -> str | tuple[str, ...]:
    return string if isinstance(string, str) else tuple(string)


def extracted() -> set[str]:
    """The message ids the console's code and templates hold now, as `make translations`
    extracts them (babel.cfg, the same keywords)."""
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    keywords = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}
    return {
        _key(message)
        for _, _, message, _, _ in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=keywords
        )
    }


def chinese_catalog():
    with (CHINESE / "messages.po").open("rb") as source:
        return read_po(source)


# --- the catalogs ---------------------------------------------------------------------------


def test_every_console_string_is_in_the_chinese_catalog():
    known = {_key(message.id) for message in chinese_catalog() if message.id}

    missing = extracted() - known

    assert not missing, f"not in messages.po (run make translations): {sorted(missing)}"


def test_every_chinese_entry_is_translated_and_none_is_fuzzy():
    catalog = chinese_catalog()
    untranslated = [
        _key(m.id)
        for m in catalog
        if m.id and (not m.string or (isinstance(m.string, tuple) and not all(m.string)))
    ]
    fuzzy = [_key(m.id) for m in catalog if m.id and m.fuzzy]

    assert not untranslated, f"untranslated: {untranslated}"
    assert not fuzzy, f"fuzzy: {fuzzy}"


def test_the_catalog_holds_nothing_the_console_no_longer_says():
    stale = {_key(m.id) for m in chinese_catalog() if m.id} - extracted()

    assert not stale, f"obsolete entries (run make translations): {sorted(stale)}"


def test_the_compiled_catalog_is_in_step_with_its_source():
    with (CHINESE / "messages.mo").open("rb") as compiled:
        mo = {_key(m.id): _text(m.string) for m in read_mo(compiled) if m.id}
    po = {_key(m.id): _text(m.string) for m in chinese_catalog() if m.id}

    assert mo == po, "messages.mo is stale: run make translations"


def test_the_automation_forms_trigger_parameters_are_the_schemas_in_english():
    described = {
        name: field.metadata["description"]
        for name, field in TriggerSchema().fields.items()
        if "description" in field.metadata
    }

    assert {name: str(hint) for name, hint in automation_forms.HINTS.items()} == described
    assert {name: str(label) for name, label in automation_forms.LABELS.items()} == {
        name: name.replace("_", " ").capitalize() for name in described
    }


def test_the_consoles_segment_names_are_the_insight_modules_in_english():
    assert {s: str(label) for s, label in insight.LABELS.items()} == segments.LABELS
    assert {s: str(meaning) for s, meaning in insight.MEANING.items()} == segments.MEANING


# --- choosing the language ------------------------------------------------------------------


def signed_in(app, client) -> None:
    with services(app):
        key = ApiKeyFactory(name="ops", scopes=("admin",))
    sign_in(client, key)


def test_without_accept_language_the_console_is_english(app, client):
    signed_in(app, client)

    page = client.get("/admin/")

    assert '<html lang="en-US">' in page.text
    assert "<h1>Dashboard</h1>" in page.text


@pytest.mark.parametrize("header", ["zh-CN", "zh", "zh-Hans", "zh-Hans-CN", "fr, zh;q=0.5"])
def test_a_browser_asking_for_simplified_chinese_reads_chinese(app, client, header):
    signed_in(app, client)

    page = client.get("/admin/", headers={"Accept-Language": header})

    assert '<html lang="zh-CN">' in page.text
    assert "<h1>仪表盘</h1>" in page.text


@pytest.mark.parametrize("header", ["zh-TW", "zh-Hant", "fr", "en-GB, zh;q=0.8"])
def test_other_languages_and_traditional_chinese_read_english(app, client, header):
    signed_in(app, client)

    page = client.get("/admin/", headers={"Accept-Language": header})

    assert '<html lang="en-US">' in page.text


def test_the_switch_remembers_the_choice_over_accept_language(app, client):
    signed_in(app, client)

    switched = client.get("/admin/language/en_US?next=/admin/members", headers=ZH)

    assert switched.status_code == 302
    assert switched.location == "/admin/members"
    page = client.get("/admin/members", headers=ZH)
    assert '<html lang="en-US">' in page.text
    assert "<h1>Members</h1>" in page.text
    client.get("/admin/language/zh_CN?next=/admin/members")
    assert "<h1>会员</h1>" in client.get("/admin/members").text


def test_the_switch_works_before_signing_in_and_goes_back_to_our_pages_only(client):
    to_login = client.get("/admin/language/zh_CN?next=/admin/login")
    elsewhere = client.get("/admin/language/zh_CN?next=//evil.example/admin")

    assert to_login.location == "/admin/login"
    assert elsewhere.location == "/admin/"
    assert "<h1>登录</h1>" in client.get("/admin/login").text


def test_an_unknown_language_changes_nothing(app, client):
    signed_in(app, client)

    client.get("/admin/language/fr_FR?next=/admin/")

    assert '<html lang="en-US">' in client.get("/admin/").text


def test_every_page_links_both_languages_marking_the_current_one(app, client):
    signed_in(app, client)

    page = client.get("/admin/members", headers=ZH).text

    assert re.search(r'<a id="language-zh_CN" href="[^"]+" lang="zh-CN"[^>]*aria-current', page)
    assert 'href="/admin/language/en_US?next=/admin/members' in page


# --- Chinese pages --------------------------------------------------------------------------


class VisibleText(HTMLParser):
    """A page's text as read, without scripts, styles or code samples (commands and paths
    stay as typed in every language)."""

    SKIP = {"script", "style", "code", "title"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        for name, value in attrs:
            if name in ("aria-label", "placeholder", "data-label") and value:
                self.parts.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def english_sentences(html: str) -> list[str]:
    """Runs of three or more English words (of two letters or more: "R F M" is the scores'
    initials): the seeded data has none, so each is a string that was not translated."""
    reader = VisibleText()
    reader.feed(html)
    text = "\n".join(reader.parts)
    return re.findall(r"[A-Za-z']{2,}(?: [A-Za-z']{2,}){2,}", text)


PAGES = [
    "/admin/",
    "/admin/members",
    "/admin/members?q=grace",
    "/admin/members/cust_42",
    "/admin/insight",
    "/admin/rules",
    "/admin/rules/new",
    "/admin/rules/simulate",
    "/admin/automations",
    "/admin/automations/new",
    "/admin/experiments",
    "/admin/bulk-grants",
    "/admin/tiers",
    "/admin/tiers/new",
    "/admin/rewards",
    "/admin/rewards/new",
    "/admin/program",
    "/admin/webhooks",
    "/admin/webhooks/new",
    "/admin/audit",
]


@pytest.fixture
def seeded_member(app) -> None:
    with services(app):
        MemberFactory(external_id="cust_42", email="grace@example.com", name="Grace Hopper")
        adjustments.adjust(db.session(), "cust_42", 300, "welcome", "seed")


@pytest.mark.parametrize("path", PAGES)
def test_a_chinese_page_leaks_no_english_sentence(app, client, seeded_member, path):
    signed_in(app, client)

    page = client.get(path, headers=ZH)

    assert page.status_code == 200, path
    assert english_sentences(page.text) == [], path
    assert english_sentences(client.get(path).text), "the English page has sentences to find"


def test_the_member_page_in_chinese_writes_figures_and_dates_in_chinese(app, client, seeded_member):
    signed_in(app, client)

    page = client.get("/admin/members/cust_42", headers=ZH).text

    assert '<span class="label">可用</span><span class="value" id="balance-available">300<' in page
    assert re.search(r"注册于 \d{4}年\d{1,2}月\d{1,2}日", page)
    assert "调整积分" in page
    assert "积分（负数为扣除）" in page  # the form's label  # noqa: RUF001


def test_a_flash_message_is_in_the_readers_language(app, client, seeded_member):
    signed_in(app, client)
    token = csrf_token(client, "/admin/members/cust_42")

    client.post(
        "/admin/members/cust_42/adjust",
        data={"points": "-120", "reason": "duplicate", "csrf_token": token},
        headers=ZH,
    )

    assert "已调整 -120 积分。" in client.get("/admin/members/cust_42", headers=ZH).text


def test_a_forms_refusal_is_in_the_readers_language(app, client, seeded_member):
    signed_in(app, client)
    token = csrf_token(client, "/admin/members/cust_42")

    client.post(
        "/admin/members/cust_42/adjust",
        data={"points": "abc", "reason": "", "csrf_token": token},
        headers=ZH,
    )

    page = client.get("/admin/members/cust_42", headers=ZH).text
    assert "原因: 缺少必填字段。" in page  # the label and marshmallow's message
    assert "不是有效的整数。" in page  # WTForms' own message, from its catalog
