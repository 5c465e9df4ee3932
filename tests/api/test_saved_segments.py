"""Saved segments through /v1/admin/segments: create, validate, read with the member count,
list, change and delete, each audited; members come from the insight refresh."""

from __future__ import annotations

import datetime as dt

import pytest

from loyalty.extensions import db
from loyalty.insight import services as insight
from tests.api.checkout_calls import add_rule, give, order
from tests.factories import MemberFactory, OrderFactory
from tests.helpers import created, ok, problem

T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
BUYERS = {"key": "buyers", "name": "Buyers", "filter": {"orders": {"min": 1}}}
BIG_SPENDERS = {
    "key": "big_spenders",
    "name": "Big spenders",
    "filter": {"net_revenue": {"min": 1_000_000}},
}


def errors_of(response):
    assert response.status_code == 422, response.json
    assert response.content_type == "application/problem+json"
    assert response.json["code"] == "validation_error"
    return response.json["errors"]


def test_a_saved_segment_is_shown_with_its_typed_filter_and_no_members_yet(client, admin):
    body = created(client.post("/v1/admin/segments", json=BUYERS, headers=admin))

    assert body["key"] == "buyers"
    assert body["members"] == 0
    assert body["filter"]["orders"] == {"min": 1, "max": None}
    assert body["filter"]["rfm_segments"] == []
    assert ok(client.get("/v1/admin/segments/buyers", headers=admin)) == body
    assert [s["key"] for s in ok(client.get("/v1/admin/segments", headers=admin))["items"]] == [
        "buyers"
    ]


def test_the_list_pages_newest_first_with_a_cursor(client, admin):
    for key in ("s1", "s2", "s3"):
        created(client.post("/v1/admin/segments", json={**BUYERS, "key": key}, headers=admin))

    first = ok(client.get("/v1/admin/segments?limit=2", headers=admin))
    assert [s["key"] for s in first["items"]] == ["s3", "s2"]
    assert first["next_cursor"]
    second = ok(
        client.get(
            "/v1/admin/segments",
            query_string={"limit": 2, "cursor": first["next_cursor"]},
            headers=admin,
        )
    )
    assert [s["key"] for s in second["items"]] == ["s1"]
    assert second["next_cursor"] is None


def test_a_page_skips_deleted_segments_and_one_full_page_has_no_next_cursor(client, admin):
    for key in ("s1", "s2", "s3"):
        created(client.post("/v1/admin/segments", json={**BUYERS, "key": key}, headers=admin))
    assert client.delete("/v1/admin/segments/s2", headers=admin).status_code == 204

    page = ok(client.get("/v1/admin/segments?limit=2", headers=admin))
    assert [s["key"] for s in page["items"]] == ["s3", "s1"]
    assert page["next_cursor"] is None


@pytest.mark.parametrize("query", ["cursor=not-a-cursor", "cursor=dDA", "limit=0", "limit=201"])
def test_the_list_refuses_a_cursor_it_never_made_or_a_bad_limit(client, admin, query):
    errors = errors_of(client.get(f"/v1/admin/segments?{query}", headers=admin))
    assert list(errors) == [query.split("=")[0]]


def test_the_member_count_is_as_of_the_last_refresh(app, client, admin):
    created(client.post("/v1/admin/segments", json=BUYERS, headers=admin))
    with app.app_context():
        MemberFactory(external_id="m1", now=T0 - dt.timedelta(days=1))
        MemberFactory(external_id="m2", now=T0 - dt.timedelta(days=1))
        OrderFactory(order_id="o1", member_id="m1", worth=10, now=T0)
        insight.refresh(db.session, as_of=T0 + dt.timedelta(days=1))

    assert ok(client.get("/v1/admin/segments/buyers", headers=admin))["members"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**BUYERS, "key": "Not A Slug"}, "key"),
        ({**BUYERS, "filter": {}}, "filter"),
        ({**BUYERS, "filter": {"recency_score": {"min": 0}}}, "filter"),
        ({**BUYERS, "filter": {"probability_alive": {"min": 0.9, "max": 0.1}}}, "filter"),
        ({**BUYERS, "filter": {"rfm_segments": ["vips"]}}, "filter"),
        ({**BUYERS, "filter": {"orders": {"min": "1"}}}, "filter"),
        ({**BUYERS, "filter": {"colour": "red"}}, "filter"),
        ({**BUYERS, "filter": {"metadata": {"vip": None}}}, "filter"),
        ({**BUYERS, "filter": {"tiers": ["gold"]}}, "filter.tiers"),
    ],
)
def test_a_bad_definition_is_a_validation_error(client, admin, body, field):
    errors = errors_of(client.post("/v1/admin/segments", json=body, headers=admin))
    assert any(name == field or name.startswith(f"{field}.") for name in errors), errors


def test_a_key_in_use_or_once_used_is_a_conflict(client, admin):
    created(client.post("/v1/admin/segments", json=BUYERS, headers=admin))
    again = client.post("/v1/admin/segments", json=BUYERS, headers=admin)
    assert again.status_code == 409
    assert again.json["code"] == "segment_key_taken"

    assert client.delete("/v1/admin/segments/buyers", headers=admin).status_code == 204
    assert client.post("/v1/admin/segments", json=BUYERS, headers=admin).status_code == 409


def test_a_change_keeps_what_it_does_not_name(client, admin):
    created(client.post("/v1/admin/segments", json={**BUYERS, "description": "d"}, headers=admin))
    changed = ok(
        client.patch(
            "/v1/admin/segments/buyers",
            json={"filter": {"orders": {"min": 2}}},
            headers=admin,
        )
    )
    assert changed["filter"]["orders"] == {"min": 2, "max": None}
    assert changed["name"] == "Buyers"
    assert changed["description"] == "d"
    empty = client.patch("/v1/admin/segments/buyers", json={}, headers=admin)
    assert errors_of(empty)


def test_a_deleted_or_unknown_segment_is_not_found(client, admin):
    created(client.post("/v1/admin/segments", json=BUYERS, headers=admin))
    assert client.delete("/v1/admin/segments/buyers", headers=admin).status_code == 204
    for response in (
        client.get("/v1/admin/segments/buyers", headers=admin),
        client.patch("/v1/admin/segments/buyers", json={"name": "x"}, headers=admin),
        client.delete("/v1/admin/segments/nope", headers=admin),
    ):
        assert response.status_code == 404
        assert response.json["code"] == "not_found"
    assert ok(client.get("/v1/admin/segments", headers=admin))["items"] == []


def test_every_change_is_audited(client, admin):
    created(client.post("/v1/admin/segments", json=BUYERS, headers=admin))
    ok(client.patch("/v1/admin/segments/buyers", json={"name": "Shoppers"}, headers=admin))
    client.delete("/v1/admin/segments/buyers", headers=admin)

    entries = ok(client.get("/v1/admin/audit-log", headers=admin))["items"]
    segment_entries = [e for e in entries if e["target_type"] == "segment"]
    assert [e["action"] for e in segment_entries] == [
        "segment.delete",
        "segment.update",
        "segment.create",
    ]
    assert segment_entries[1]["before"]["name"] == "Buyers"
    assert segment_entries[1]["after"]["name"] == "Shoppers"


def test_segments_are_for_admins_only(client, headers_for):
    for scope in ("checkout", "app"):
        response = client.get("/v1/admin/segments", headers=headers_for(scope))
        assert response.status_code == 403


# --- rules and rewards limited to segments -----------------------------------------------


@pytest.fixture
def buyer_and_browser(app, client, admin):
    """c1 bought before the last refresh and is in "buyers"; c2 did not and is not; nobody
    is in "big_spenders"."""
    created(client.post("/v1/admin/segments", json=BUYERS, headers=admin))
    created(client.post("/v1/admin/segments", json=BIG_SPENDERS, headers=admin))
    with app.app_context():
        MemberFactory(external_id="c1", now=T0 - dt.timedelta(days=1))
        MemberFactory(external_id="c2", now=T0 - dt.timedelta(days=1))
        OrderFactory(order_id="o0", member_id="c1", worth=10, now=T0)
        insight.refresh(db.session, as_of=T0 + dt.timedelta(days=1))


def test_a_rule_limited_to_segments_gives_only_to_their_members(
    client, admin, checkout, buyer_and_browser
):
    bonus = add_rule(
        client,
        admin,
        {
            "name": "Buyers bonus",
            "kind": "bonus",
            "points": 200,
            "conditions": {"segments": ["buyers", "big_spenders"]},
        },
    )
    assert bonus["conditions"]["segments"] == ["buyers", "big_spenders"]

    def bonus_points(member_id, order_id):
        body = created(order(client, checkout, order_id, member_id=member_id))
        return [c["points"] for c in body["breakdown"] if c["rule_id"] == bonus["id"]]

    assert bonus_points("c1", "o1") == [200]
    assert bonus_points("c2", "o2") == []


def test_a_reward_limited_to_segments_is_redeemed_only_by_their_members(
    client, admin, app_key, buyer_and_browser
):
    reward = created(
        client.post(
            "/v1/admin/rewards",
            json={"name": "Tote", "kind": "product", "cost_points": 100, "segments": ["buyers"]},
            headers=admin,
        )
    )
    assert reward["segments"] == ["buyers"]
    for member in ("c1", "c2"):
        give(client, admin, member, 500)

    def redeem(member):
        return client.post(
            f"/v1/members/{member}/reward-redemptions",
            json={"reward_id": reward["id"]},
            headers=app_key,
        )

    assert redeem("c1").status_code == 201
    refused = redeem("c2")
    assert refused.status_code == 422
    assert refused.json["code"] == "reward_unavailable"
    items = ok(client.get("/v1/rewards?member_id=c2", headers=app_key))["items"]
    assert [(i["redeemable"], i["locked_reason"]) for i in items] == [
        (False, "not in its segments")
    ]
    changed = client.patch(
        f"/v1/admin/rewards/{reward['id']}", json={"segments": []}, headers=admin
    )
    assert ok(changed)["segments"] == []
    assert redeem("c2").status_code == 201


# --- the keys rules and rewards name -----------------------------------------------------


def add_bonus(client, admin, segments, status=201):
    body = {"name": "Segment bonus", "kind": "bonus", "points": 200}
    response = client.post(
        "/v1/admin/rules", json={**body, "conditions": {"segments": segments}}, headers=admin
    )
    assert response.status_code == status, response.json
    return response


def add_reward(client, admin, segments):
    return client.post(
        "/v1/admin/rewards",
        json={"name": "Tote", "kind": "product", "cost_points": 100, "segments": segments},
        headers=admin,
    )


def unknown_segment(response, field):
    """The refusal's messages for `field`, the only field it names."""
    body = problem(response, 422, "unknown_segment")
    assert list(body["errors"]) == [field]
    assert "rfm_segments" in body["detail"]
    return body["errors"][field]


@pytest.fixture
def buyers(client, admin):
    return created(client.post("/v1/admin/segments", json=BUYERS, headers=admin))


def test_a_rule_naming_an_unknown_segment_is_refused_and_not_created(client, admin, buyers):
    refused = add_bonus(client, admin, ["buyers", "byuers"], status=422)

    assert unknown_segment(refused, "conditions.segments") == [
        "No saved segment with key 'byuers'."
    ]
    assert ok(client.get("/v1/admin/rules", headers=admin))["items"] == []


def test_an_rfm_segment_name_is_no_key_until_a_saved_segment_takes_it(client, admin):
    """Membership is looked up among saved segments only: a bare RFM name would match
    nobody, so it is refused; a saved segment filtering on it (under any key) is the way."""
    refused = add_bonus(client, admin, ["champions"], status=422)
    assert unknown_segment(refused, "conditions.segments") == [
        "No saved segment with key 'champions'."
    ]

    champions = {"key": "champions", "name": "Champions", "filter": {"rfm_segments": ["champions"]}}
    created(client.post("/v1/admin/segments", json=champions, headers=admin))
    rule = created(add_bonus(client, admin, ["champions"]))
    assert rule["conditions"]["segments"] == ["champions"]


def test_a_deleted_segment_key_is_unknown(client, admin, buyers):
    assert client.delete("/v1/admin/segments/buyers", headers=admin).status_code == 204

    refused = add_bonus(client, admin, ["buyers"], status=422)
    assert unknown_segment(refused, "conditions.segments") == [
        "No saved segment with key 'buyers'."
    ]
    assert unknown_segment(add_reward(client, admin, ["buyers"]), "segments")


def test_a_rule_change_naming_an_unknown_segment_is_refused_and_changes_nothing(
    client, admin, buyers
):
    rule = created(add_bonus(client, admin, ["buyers"]))
    refused = client.patch(
        f"/v1/admin/rules/{rule['id']}",
        json={"points": 300, "conditions": {"segments": ["buyers", "nope"]}},
        headers=admin,
    )

    assert unknown_segment(refused, "conditions.segments") == ["No saved segment with key 'nope'."]
    current = ok(client.get(f"/v1/admin/rules/{rule['id']}", headers=admin))
    assert (current["version"], current["points"]) == (1, 200)


def test_a_rule_change_not_naming_segments_keeps_them(client, admin, buyers):
    rule = created(add_bonus(client, admin, ["buyers"]))
    changed = ok(
        client.patch(
            f"/v1/admin/rules/{rule['id']}",
            json={"points": 300, "conditions": {"min_amount": 100}},
            headers=admin,
        )
    )
    assert changed["conditions"]["segments"] == ["buyers"]
    assert changed["conditions"]["min_amount"] == 100


def test_a_reward_naming_an_unknown_segment_is_refused_at_create_and_change(client, admin, buyers):
    refused = add_reward(client, admin, ["buyers", "nope"])
    assert unknown_segment(refused, "segments") == ["No saved segment with key 'nope'."]

    reward = created(add_reward(client, admin, ["buyers"]))
    refused = client.patch(
        f"/v1/admin/rewards/{reward['id']}", json={"segments": ["gone"]}, headers=admin
    )
    assert unknown_segment(refused, "segments") == ["No saved segment with key 'gone'."]
    assert ok(client.get(f"/v1/admin/rewards/{reward['id']}", headers=admin))["segments"] == [
        "buyers"
    ]


def test_a_segment_a_rule_or_reward_names_cannot_be_deleted(client, admin, buyers):
    rule = created(add_bonus(client, admin, ["buyers"]))
    reward = created(add_reward(client, admin, ["buyers"]))

    refused = problem(
        client.delete("/v1/admin/segments/buyers", headers=admin), 409, "segment_in_use"
    )

    assert refused["used_by"] == [
        {"type": "rule", "id": rule["id"], "name": "Segment bonus"},
        {"type": "reward", "id": reward["id"], "name": "Tote"},
    ]
    assert rule["id"] in refused["detail"]
    assert reward["id"] in refused["detail"]
    assert ok(client.get("/v1/admin/segments/buyers", headers=admin))["key"] == "buyers"


def test_an_inactive_rule_or_reward_still_holds_its_segment(client, admin, buyers):
    rule = created(add_bonus(client, admin, ["buyers"]))
    reward = created(add_reward(client, admin, ["buyers"]))
    ok(client.post(f"/v1/admin/rules/{rule['id']}/deactivate", headers=admin))
    ok(client.post(f"/v1/admin/rewards/{reward['id']}/deactivate", headers=admin))

    refused = problem(
        client.delete("/v1/admin/segments/buyers", headers=admin), 409, "segment_in_use"
    )
    assert [use["type"] for use in refused["used_by"]] == ["rule", "reward"]


def test_a_segment_is_deleted_once_nothing_names_it_any_more(client, admin, buyers):
    """Only a rule's current version counts: its history may name the segment."""
    rule = created(add_bonus(client, admin, ["buyers"]))
    reward = created(add_reward(client, admin, ["buyers"]))
    ok(
        client.patch(
            f"/v1/admin/rules/{rule['id']}", json={"conditions": {"segments": []}}, headers=admin
        )
    )
    ok(client.patch(f"/v1/admin/rewards/{reward['id']}", json={"segments": []}, headers=admin))

    assert client.delete("/v1/admin/segments/buyers", headers=admin).status_code == 204
