"""The admin's tier catalog over HTTP: creating, reading, changing and deleting tiers.

The tiers' program, its defaults and how time is moved: see tests/api/tier_calls.py. After
every test the whole ledger must verify.
"""

from __future__ import annotations

import pytest

from tests.api.tier_calls import (
    card,
    order,
    tier_of,
)
from tests.factories import TierFactory
from tests.helpers import created, problem

# After every test the whole ledger must verify.
pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")


def test_creating_a_tier_returns_201_with_the_tier(client, admin):
    body = created(
        client.post("/v1/admin/tiers", json=TierFactory.build(platinum=True), headers=admin)
    )

    assert body == {**TierFactory.build(platinum=True), "members": 0}


def test_a_new_tier_is_kept_twelve_months_and_has_no_benefits_unless_told(client, admin):
    body = created(
        client.post(
            "/v1/admin/tiers",
            json={"code": "silver", "name": "Silver", "rank": 1, "threshold": 100},
            headers=admin,
        )
    )

    assert body["retention_months"] == 12
    assert body["benefits"] == []


def test_tiers_are_listed_lowest_rank_first(client, admin, program):
    response = client.get("/v1/admin/tiers", headers=admin)

    assert response.status_code == 200
    assert [t["code"] for t in response.json["items"]] == ["silver", "gold", "platinum"]


def test_a_tier_is_read_by_its_code(client, admin, program):
    response = client.get("/v1/admin/tiers/gold", headers=admin)

    assert response.status_code == 200
    assert response.json == {**TierFactory.build(gold=True), "members": 0}


def test_a_tier_counts_the_members_in_it(client, admin, checkout, program, member):
    order(client, checkout, "o1", 150)

    assert client.get("/v1/admin/tiers/silver", headers=admin).json["members"] == 1
    assert client.get("/v1/admin/tiers/gold", headers=admin).json["members"] == 0


def test_a_second_tier_with_a_taken_code_is_409_tier_exists(client, admin, program):
    response = client.post(
        "/v1/admin/tiers", json=TierFactory.build(gold=True, rank=9), headers=admin
    )

    problem(response, 409, "tier_exists")


def test_a_second_tier_with_a_taken_rank_is_409_tier_exists(client, admin, program):
    response = client.post(
        "/v1/admin/tiers", json=TierFactory.build(gold=True, code="gold2"), headers=admin
    )

    problem(response, 409, "tier_exists")
    codes = [t["code"] for t in client.get("/v1/admin/tiers", headers=admin).json["items"]]
    assert codes == ["silver", "gold", "platinum"]


def test_patch_changes_only_what_it_names(client, admin, program):
    response = client.patch(
        "/v1/admin/tiers/gold", json={"threshold": 600, "name": "Gold+"}, headers=admin
    )

    assert response.status_code == 200
    assert response.json == {
        **TierFactory.build(gold=True),
        "threshold": 600,
        "name": "Gold+",
        "members": 0,
    }
    assert client.get("/v1/admin/tiers/gold", headers=admin).json["threshold"] == 600


def test_patch_replaces_the_benefits(client, admin, program):
    benefits = [{"code": "birthday_gift", "params": {"sku": "cake"}}]

    response = client.patch("/v1/admin/tiers/gold", json={"benefits": benefits}, headers=admin)

    assert response.status_code == 200
    assert response.json["benefits"] == benefits


def test_patch_to_a_rank_another_tier_has_is_409_tier_exists(client, admin, program):
    response = client.patch("/v1/admin/tiers/gold", json={"rank": 1}, headers=admin)

    problem(response, 409, "tier_exists")
    assert client.get("/v1/admin/tiers/gold", headers=admin).json["rank"] == 2


def test_patch_naming_nothing_is_422(client, admin, program):
    problem(client.patch("/v1/admin/tiers/gold", json={}, headers=admin), 422, "validation_error")


def test_deleting_a_tier_nobody_is_in_is_204_and_it_is_gone(client, admin, program):
    response = client.delete("/v1/admin/tiers/platinum", headers=admin)

    assert response.status_code == 204
    assert response.data == b""
    problem(client.get("/v1/admin/tiers/platinum", headers=admin), 404, "not_found")


def test_deleting_a_tier_members_are_in_is_409_tier_in_use(
    client, admin, checkout, program, member
):
    order(client, checkout, "o1", 150)

    problem(client.delete("/v1/admin/tiers/silver", headers=admin), 409, "tier_in_use")
    assert client.get("/v1/admin/tiers/silver", headers=admin).status_code == 200
    assert tier_of(card(client, checkout)) == "silver"


@pytest.mark.parametrize(
    ("method", "body"), [("get", None), ("patch", {"threshold": 1}), ("delete", None)]
)
def test_an_unknown_tier_is_404(client, admin, program, method, body):
    response = getattr(client, method)("/v1/admin/tiers/diamond", json=body, headers=admin)

    problem(response, 404, "not_found")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"code": None}, "code"),
        ({"code": "Gold"}, "code"),
        ({"code": "g" * 33}, "code"),
        ({"name": ""}, "name"),
        ({"rank": 0}, "rank"),
        ({"rank": "2"}, "rank"),
        ({"threshold": -1}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"retention_months": -1}, "retention_months"),
        ({"benefits": [{"params": {}}]}, "benefits.0.code"),
        ({"benefits": [{"code": "Free Shipping"}]}, "benefits.0.code"),
        ({"benefits": [{"code": "points_multiplier"}]}, "benefits.0.params"),
        ({"benefits": [{"code": "points_multiplier", "params": {}}]}, "benefits.0.params"),
        (
            {"benefits": [{"code": "points_multiplier", "params": {"factor": "x2"}}]},
            "benefits.0.params",
        ),
        ({"colour": "gold"}, "colour"),
    ],
)
def test_an_invalid_tier_is_422_naming_the_field(client, admin, change, field):
    body = {
        key: value
        for key, value in {**TierFactory.build(gold=True), **change}.items()
        if value is not None
    }

    found = problem(
        client.post("/v1/admin/tiers", json=body, headers=admin), 422, "validation_error"
    )

    assert field in found["errors"]


@pytest.mark.parametrize("factor", ["1", "0", "0.5", "101", "1.00001"])
def test_a_points_multiplier_factor_must_be_above_1_and_at_most_100(client, admin, factor):
    benefit = {"code": "points_multiplier", "params": {"factor": factor}}

    response = client.post(
        "/v1/admin/tiers",
        json=TierFactory.build(gold=True, benefits=[benefit]),
        headers=admin,
    )

    found = problem(response, 422, "validation_error")
    assert "benefits.0.params" in found["errors"]


def test_tiers_are_managed_by_admins_only(client, checkout, app_key):
    for headers in (checkout, app_key):
        assert client.get("/v1/admin/tiers", headers=headers).status_code == 403
        assert (
            client.post(
                "/v1/admin/tiers", json=TierFactory.build(gold=True), headers=headers
            ).status_code
            == 403
        )
