"""Bulk grants through /v1/admin/bulk-grants: create (a list of ids, a CSV upload or a
segment), read the progress, list, and read the report once `loyalty jobs run` worked it."""

from __future__ import annotations

import pytest
from flask import Flask

from loyalty.extensions import db
from loyalty.grants import services as grants
from tests.helpers import created, ok, problem

APOLOGY = {"reason": "Sorry for the outage", "points": 200, "member_ids": ["c1", "c2", "ghost"]}


@pytest.fixture
def members(client, checkout):
    for external_id in ("c1", "c2"):
        created(client.post("/v1/members", json={"external_id": external_id}, headers=checkout))


def run(app: Flask, batch_size: int = 500) -> None:
    with app.app_context():
        grants.run_due(db.session, batch_size=batch_size)


def test_a_created_job_is_queued_with_its_progress(client, admin, members):
    job = created(client.post("/v1/admin/bulk-grants", json=APOLOGY, headers=admin))

    assert {k: job[k] for k in ("state", "kind", "points", "total", "done", "granted")} == {
        "state": "queued",
        "kind": "points",
        "points": 200,
        "total": 3,
        "done": 0,
        "granted": 0,
    }
    assert ok(client.get(f"/v1/admin/bulk-grants/{job['id']}", headers=admin)) == job
    listed = ok(client.get("/v1/admin/bulk-grants", headers=admin))
    assert [item["id"] for item in listed["items"]] == [job["id"]]


def test_the_report_after_a_run_says_what_each_member_got(app, client, admin, members):
    job = created(client.post("/v1/admin/bulk-grants", json=APOLOGY, headers=admin))

    run(app, batch_size=2)

    progress = ok(client.get(f"/v1/admin/bulk-grants/{job['id']}", headers=admin))
    assert (progress["state"], progress["done"], progress["granted"], progress["refused"]) == (
        "done",
        3,
        2,
        1,
    )
    report = ok(client.get(f"/v1/admin/bulk-grants/{job['id']}/report?limit=2", headers=admin))
    assert [(i["member_id"], i["outcome"], i["points"]) for i in report["items"]] == [
        ("c1", "granted", 200),
        ("c2", "granted", 200),
    ]
    rest = ok(
        client.get(
            f"/v1/admin/bulk-grants/{job['id']}/report",
            query_string={"limit": 2, "cursor": report["next_cursor"]},
            headers=admin,
        )
    )
    assert [(i["member_id"], i["refusal"]) for i in rest["items"]] == [("ghost", "unknown_member")]
    assert rest["next_cursor"] is None
    refused = ok(
        client.get(f"/v1/admin/bulk-grants/{job['id']}/report?outcome=refused", headers=admin)
    )
    assert [i["member_id"] for i in refused["items"]] == ["ghost"]
    history = ok(client.get("/v1/members/c1/transactions", headers=admin))["items"]
    assert history[0]["id"] == report["items"][0]["transaction_id"]


def test_a_csv_upload_names_the_ids_in_its_first_column(client, admin, members):
    upload = 'external_id,name\nc1,Ann\n\n"c2",Bob\n'
    job = created(
        client.post(
            "/v1/admin/bulk-grants",
            json={"reason": "Launch", "points": 5, "csv": upload},
            headers=admin,
        )
    )

    report = ok(client.get(f"/v1/admin/bulk-grants/{job['id']}/report", headers=admin))
    assert [item["member_id"] for item in report["items"]] == ["c1", "c2"]


def test_a_csv_line_that_is_no_external_id_is_refused_by_its_number(client, admin):
    body = {"reason": "Launch", "points": 5, "csv": "c1\nnot an id\n"}

    refused = problem(
        client.post("/v1/admin/bulk-grants", json=body, headers=admin), 422, "validation_error"
    )

    assert refused["errors"]["csv"] == ["Line 2: 'not an id' is not an external id."]


@pytest.mark.parametrize(
    "body",
    [
        {"reason": "x", "points": 5},
        {"reason": "x", "points": 5, "member_ids": ["c1"], "segment": "vips"},
        {"reason": "x", "member_ids": ["c1"]},
        {"reason": "x", "points": 5, "benefit": {"code": "lounge"}, "member_ids": ["c1"]},
        {"reason": "x", "points": 0, "member_ids": ["c1"]},
        {"reason": "x", "points": 5, "segment": "no_such_segment"},
        {
            "reason": "x",
            "benefit": {"code": "lounge"},
            "member_ids": ["c1"],
            "budget": {"points": 9},
        },
    ],
    ids=[
        "nobody",
        "ids and a segment",
        "nothing to grant",
        "points and a benefit",
        "zero points",
        "unknown segment",
        "a budget on a benefit",
    ],
)
def test_a_job_that_cannot_run_is_refused(client, admin, body):
    problem(client.post("/v1/admin/bulk-grants", json=body, headers=admin), 422, "validation_error")


def test_the_same_grant_id_returns_the_same_job_and_another_body_conflicts(client, admin):
    body = {**APOLOGY, "grant_id": "apology-1"}
    first = created(client.post("/v1/admin/bulk-grants", json=body, headers=admin))

    again = ok(client.post("/v1/admin/bulk-grants", json=body, headers=admin))

    assert again == first
    other = {**body, "points": 300}
    problem(
        client.post("/v1/admin/bulk-grants", json=other, headers=admin), 409, "bulk_grant_conflict"
    )
    assert len(ok(client.get("/v1/admin/bulk-grants", headers=admin))["items"]) == 1


def test_an_idempotency_key_replays_the_first_answer(client, admin):
    headers = {**admin, "Idempotency-Key": "bulk-1"}
    first = created(client.post("/v1/admin/bulk-grants", json=APOLOGY, headers=headers))

    assert created(client.post("/v1/admin/bulk-grants", json=APOLOGY, headers=headers)) == first
    assert len(ok(client.get("/v1/admin/bulk-grants", headers=admin))["items"]) == 1


def test_an_unknown_job_is_not_found(client, admin):
    missing = "/v1/admin/bulk-grants/00000000-0000-4000-8000-000000000000"
    problem(client.get(missing, headers=admin), 404, "not_found")
    problem(client.get(f"{missing}/report", headers=admin), 404, "not_found")


def test_only_an_admin_key_may_grant(client, checkout):
    problem(client.post("/v1/admin/bulk-grants", json=APOLOGY, headers=checkout), 403, "forbidden")
