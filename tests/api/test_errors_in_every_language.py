"""API errors are for machines: their title and detail stay English, their codes the same,
whatever language the caller's Accept-Language asks for (the console's language is the
console's only)."""

from __future__ import annotations

ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}


def test_api_errors_stay_english_whatever_the_browser_asks(client, checkout):
    english = client.get("/v1/members/nobody", headers=checkout)
    asked_in_chinese = client.get("/v1/members/nobody", headers={**checkout, **ZH})

    assert asked_in_chinese.status_code == 404
    assert asked_in_chinese.json == english.json
    assert asked_in_chinese.json["code"] == "not_found"
    assert asked_in_chinese.json["title"] == "Member not found"
