"""Referrals over HTTP: the code on the card, enrolling with it, the refusals and their
codes, and the program's referral settings. The rewards and their timing are in
tests/integration/test_referrals.py."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from loyalty.extensions import db
from loyalty.referrals.models import Referral
from tests.console import sign_in
from tests.factories import ApiKeyFactory, OrderFactory
from tests.helpers import created, ok, problem, services

REFERRALS = {"referrer_points": 500, "friend_points": 250, "max_per_period": 1, "period_days": 30}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def enrol(client: FlaskClient, headers: dict[str, str], **fields: Any) -> TestResponse:
    return client.post("/v1/members", json=fields, headers=headers)


@pytest.fixture
def host_code(client, checkout) -> str:
    card = created(enrol(client, checkout, external_id="host", email="host@example.com"))
    return str(card["referral_code"])


def test_the_card_shows_the_members_referral_code(client, checkout, host_code):
    card = ok(client.get("/v1/members/host", headers=checkout))

    assert card["referral_code"] == host_code


def test_a_friend_enrols_with_the_code_in_any_case(client, checkout, host_code):
    response = enrol(client, checkout, external_id="friend", referral_code=host_code.lower())

    assert response.status_code == 201
    assert response.json["referral_code"] != host_code


def test_a_code_nobody_has_is_a_422_referral_code_not_found(client, checkout, host_code):
    problem(
        enrol(client, checkout, external_id="friend", referral_code="ZZZZ2222"),
        422,
        "referral_code_not_found",
    )


def test_the_referrers_own_email_is_a_422_self_referral(client, checkout, host_code):
    problem(
        enrol(
            client,
            checkout,
            external_id="friend",
            email="Host@Example.com",
            referral_code=host_code,
        ),
        422,
        "self_referral",
    )


def test_naming_oneself_as_referrer_is_a_422_self_referral(client, checkout):
    problem(enrol(client, checkout, external_id="solo", referred_by="solo"), 422, "self_referral")


@pytest.mark.parametrize("code", ["abc", "has space", "x" * 33, "bad-dash"])
def test_a_malformed_code_is_a_422_validation_error(client, checkout, code):
    body = problem(
        enrol(client, checkout, external_id="friend", referral_code=code), 422, "validation_error"
    )
    assert list(body["errors"]) == ["referral_code"]


def test_a_code_and_referred_by_together_are_a_422(client, checkout, host_code):
    problem(
        enrol(client, checkout, external_id="friend", referral_code=host_code, referred_by="host"),
        422,
        "validation_error",
    )


def test_an_enrolment_retried_with_a_code_answers_200_and_links_once(
    client, checkout, host_code, app
):
    first = enrol(client, checkout, external_id="friend", referral_code=host_code)
    again = enrol(client, checkout, external_id="friend", referral_code=host_code)

    assert (first.status_code, again.status_code) == (201, 200)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Referral)) == 1


def test_referral_settings_are_read_and_changed_whole(client, admin):
    changed = ok(client.patch("/v1/admin/program", json={"referral": REFERRALS}, headers=admin))

    assert changed["referral"] == REFERRALS
    assert ok(client.get("/v1/admin/program", headers=admin))["referral"] == REFERRALS


def test_a_friend_past_the_limit_still_enrols(client, admin, checkout, host_code, app):
    ok(client.patch("/v1/admin/program", json={"referral": REFERRALS}, headers=admin))
    created(enrol(client, checkout, external_id="first", referral_code=host_code))

    assert enrol(client, checkout, external_id="second", referral_code=host_code).status_code == 201


def test_the_friends_first_order_is_answered_as_usual(client, checkout, host_code, app):
    created(enrol(client, checkout, external_id="friend", referral_code=host_code))
    response = client.post(
        "/v1/orders", json=OrderFactory.build(member_id="friend"), headers=checkout
    )

    assert response.status_code == 201


def test_the_console_member_page_shows_the_referral_code(app, client, host_code):
    with services(app):
        key = ApiKeyFactory(name="ops", scopes=("admin",))
    sign_in(client, key)

    page = client.get("/admin/members/host")

    assert f'<code id="referral-code">{host_code}</code>' in page.text


def test_a_member_lists_the_friends_they_referred_newest_first(
    client, admin, checkout, host_code, app_key
):
    ok(client.patch("/v1/admin/program", json={"referral": REFERRALS}, headers=admin))
    created(enrol(client, checkout, external_id="first", referral_code=host_code))
    created(enrol(client, checkout, external_id="second", referral_code=host_code))
    token = created(client.post("/v1/members/host/tokens", json={}, headers=app_key))["token"]

    first = ok(client.get("/v1/members/host/referrals?limit=1", headers=bearer(token)))
    rest = ok(
        client.get(
            f"/v1/members/host/referrals?cursor={first['next_cursor']}", headers=bearer(token)
        )
    )

    assert [r["status"] for r in first["items"] + rest["items"]] == ["over_limit", "linked"]
    assert rest["next_cursor"] is None
    assert all(r["code"] == host_code and r["referrer_points"] == 0 for r in rest["items"])
    # The friends are not named to the member.
    answers = str(first) + str(rest)
    assert "first" not in answers
    assert "second" not in answers


def test_another_members_token_cannot_list_their_referrals(client, checkout, host_code, app_key):
    created(enrol(client, checkout, external_id="friend", referral_code=host_code))
    token = created(client.post("/v1/members/friend/tokens", json={}, headers=app_key))["token"]

    problem(
        client.get("/v1/members/host/referrals", headers=bearer(token)),
        403,
        "token_member_mismatch",
    )
    assert ok(client.get("/v1/members/friend/referrals", headers=bearer(token)))["items"] == []


def test_the_referrals_of_an_unknown_member_are_a_404(client, checkout):
    problem(client.get("/v1/members/nobody/referrals", headers=checkout), 404, "not_found")


def test_the_console_member_pages_show_both_sides_of_a_referral(app, client, checkout, host_code):
    created(enrol(client, checkout, external_id="friend", referral_code=host_code))
    with services(app):
        key = ApiKeyFactory(name="ops", scopes=("admin",))
    sign_in(client, key)

    host = client.get("/admin/members/host").text
    friend = client.get("/admin/members/friend").text

    assert 'href="/admin/members/friend">friend</a>' in host
    assert "Not referred by anyone." in host
    assert 'Enrolled on the referral of <a href="/admin/members/host">host</a>' in friend
    assert f"(code <code>{host_code}</code>): linked" in friend
