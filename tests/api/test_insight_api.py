"""Member insight over HTTP (admin): a member's row, the program's summary, and the member
list with its filters, as a page and as CSV. On SQLite and PostgreSQL.

The history is the test's: members enrol on day -1, orders are placed at fixed moments, and
the refresh names its as_of (day 30).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from loyalty.extensions import db
from loyalty.insight import bgnbd, clv, fitting
from loyalty.insight import services as insight
from tests.factories import MemberFactory, OrderFactory
from tests.helpers import ok, problem

DAY = dt.timedelta(days=1)
T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
AS_OF = T0 + 30 * DAY

# external id, email, name, and the days (from T0) and dollars of their orders.
BUYERS: list[tuple[str, str | None, str | None, list[tuple[int, int]]]] = [
    ("ada", "ada@example.com", "Ada Lovelace", [(0, 50), (10, 30), (28, 80)]),
    ("bob", "bob@example.com", "Bob", [(1, 20)]),
    ("cy_1", "cy@example.com", "=HYPERLINK(1)", [(5, 40), (25, 40)]),
    ("cyx1", None, "Cy 100% Cotton", [(3, 10)]),
    ("dee", "dee@shop.example", "Dee", [(29, 200)]),
]


def build(app: Flask, *, refresh: bool = True) -> None:
    with app.app_context():
        for external_id, email, name, orders in BUYERS:
            MemberFactory(external_id=external_id, email=email, name=name, now=T0 - DAY)
            for n, (day, dollars) in enumerate(orders):
                OrderFactory(
                    order_id=f"{external_id}-{n}",
                    member_id=external_id,
                    worth=dollars,
                    now=T0 + day * DAY,
                )
        MemberFactory(external_id="nobuy", email="nobuy@example.com", name="No Buy", now=T0)
        if refresh:
            insight.refresh(db.session, as_of=AS_OF)


@pytest.fixture
def history(app: Flask) -> None:
    build(app)


def members(client: FlaskClient, admin: dict[str, str], **query: Any) -> dict[str, Any]:
    return ok(client.get("/v1/admin/members", query_string=query, headers=admin))


def ids(page: dict[str, Any]) -> list[str]:
    return [item["external_id"] for item in page["items"]]


# --- one member -----------------------------------------------------------------------------


def test_a_members_insight_shows_their_figures_as_of_the_latest_refresh(client, admin, history):
    body = ok(client.get("/v1/admin/members/ada/insight", headers=admin))

    assert body["external_id"] == "ada"
    assert dt.datetime.fromisoformat(body["as_of"]) == AS_OF
    assert body["refreshed_at"] is not None
    assert body["orders"] == 3
    assert body["purchase_days"] == 3
    assert body["net_revenue"] == 16000
    assert body["currency"] == "USD"
    assert body["days_since_last_order"] == 2
    assert body["segment"] is not None
    assert {body["recency_score"], body["frequency_score"], body["monetary_score"]} <= {
        1,
        2,
        3,
        4,
        5,
    }


def test_a_member_without_purchases_has_insight_without_scores(client, admin, history):
    body = ok(client.get("/v1/admin/members/nobuy/insight", headers=admin))

    assert body["orders"] == 0
    assert body["segment"] is None
    assert body["predicted_value"] is None


def test_an_unknown_members_insight_is_not_found(client, admin, history):
    problem(client.get("/v1/admin/members/ghost/insight", headers=admin), 404, "not_found")


def test_insight_before_any_refresh_is_a_conflict_with_its_code(app, client, admin):
    build(app, refresh=False)

    problem(
        client.get("/v1/admin/members/ada/insight", headers=admin), 409, "insight_not_refreshed"
    )
    problem(client.get("/v1/admin/insight", headers=admin), 409, "insight_not_refreshed")


def test_a_member_enrolled_after_the_refresh_has_no_insight_yet(app, client, admin, history):
    with app.app_context():
        MemberFactory(external_id="late", now=AS_OF + DAY)

    problem(
        client.get("/v1/admin/members/late/insight", headers=admin), 409, "insight_not_refreshed"
    )
    late = next(i for i in members(client, admin)["items"] if i["external_id"] == "late")
    assert late["insight"] is None


def test_insight_is_for_admins_only(client, checkout, history):
    problem(client.get("/v1/admin/members/ada/insight", headers=checkout), 403, "forbidden")
    problem(client.get("/v1/admin/insight", headers=checkout), 403, "forbidden")
    problem(client.get("/v1/admin/members", headers=checkout), 403, "forbidden")
    problem(client.get("/v1/admin/members.csv", headers=checkout), 403, "forbidden")


# --- the summary ----------------------------------------------------------------------------


def test_the_summary_names_its_refresh_and_counts_members_and_buyers(client, admin, history):
    body = ok(client.get("/v1/admin/insight", headers=admin))

    assert dt.datetime.fromisoformat(body["refresh"]["as_of"]) == AS_OF
    assert body["refresh"]["members"] == 6
    assert body["refresh"]["buyers"] == 5
    assert body["refresh"]["currency"] == "USD"
    assert body["revenue"] == 47000


def test_the_summary_lists_every_segment_with_integer_shares(client, admin, history):
    body = ok(client.get("/v1/admin/insight", headers=admin))
    segments = body["segments"]

    assert len(segments) == 11
    assert sum(s["members"] for s in segments) == 5
    assert sum(s["revenue"] for s in segments) == 47000
    # Rounded per segment: within a basis point per segment of the whole.
    assert abs(sum(s["revenue_share_bp"] for s in segments) - 10_000) <= len(segments)
    assert all(isinstance(s["revenue_share_bp"], int) for s in segments)


def test_the_rfm_grid_has_every_cell_and_adds_up_to_the_buyers(client, admin, history):
    grid = ok(client.get("/v1/admin/insight", headers=admin))["rfm_grid"]

    assert [(c["recency_score"], c["fm_score"]) for c in grid] == [
        (r, f) for r in (5, 4, 3, 2, 1) for f in (1, 2, 3, 4, 5)
    ]
    assert sum(c["members"] for c in grid) == 5
    assert sum(c["revenue"] for c in grid) == 47000


def test_the_summary_shows_the_model_step(client, admin, history):
    model = ok(client.get("/v1/admin/insight", headers=admin))["model"]

    assert model["status"] in ("fitted", "not_fitted")
    assert model["time_unit"] == "days"
    assert model["customers"] >= 0


# --- the member list ------------------------------------------------------------------------


def test_the_list_shows_every_member_newest_enrolment_first_with_insight(client, admin, history):
    page = members(client, admin)

    assert ids(page) == ["nobuy", "dee", "cyx1", "cy_1", "bob", "ada"]
    assert page["next_cursor"] is None
    ada = page["items"][-1]
    assert ada["email"] == "ada@example.com"
    assert ada["status"] == "active"
    assert ada["insight"]["net_revenue"] == 16000


def test_the_list_pages_by_cursor(client, admin, history):
    first = members(client, admin, limit=4)
    second = members(client, admin, limit=4, cursor=first["next_cursor"])

    assert len(first["items"]) == 4
    assert ids(first) + ids(second) == ids(members(client, admin))
    assert second["next_cursor"] is None


def test_the_list_filters_by_segment_repeated_or_comma_separated(client, admin, history):
    segment_of = {
        i["external_id"]: i["insight"]["segment"] for i in members(client, admin)["items"]
    }
    wanted = sorted({s for s in segment_of.values() if s})[:2]
    expected = {m for m, s in segment_of.items() if s in wanted}

    repeated = client.get(
        "/v1/admin/members?" + "&".join(f"segment={s}" for s in wanted), headers=admin
    )
    commas = members(client, admin, segment=",".join(wanted))

    assert set(ids(ok(repeated))) == expected
    assert set(ids(commas)) == expected


def test_an_unknown_segment_is_a_validation_error(client, admin, history):
    response = client.get("/v1/admin/members?segment=vip", headers=admin)

    assert problem(response, 422, "validation_error")["errors"]


def test_the_list_filters_by_days_since_the_last_order_and_scores(client, admin, history):
    recent = members(client, admin, days_since_last_order_max=5)
    five = members(client, admin, recency_score=5)

    assert set(ids(recent)) == {"ada", "cy_1", "dee"}
    assert all(i["insight"]["recency_score"] == 5 for i in five["items"])


def test_the_list_filters_by_status(app, client, admin, history):
    client.patch("/v1/admin/members/bob", json={"status": "suspended"}, headers=admin)

    assert ids(members(client, admin, status="suspended")) == ["bob"]


def test_text_search_is_case_insensitive_on_id_email_and_name(client, admin, history):
    assert ids(members(client, admin, q="LOVELACE")) == ["ada"]
    assert ids(members(client, admin, q="shop.example")) == ["dee"]
    assert ids(members(client, admin, q="bo")) == ["bob"]


def test_text_search_takes_like_wildcards_literally(client, admin, history):
    assert ids(members(client, admin, q="100%")) == ["cyx1"]
    assert ids(members(client, admin, q="cy_")) == ["cy_1"]
    assert ids(members(client, admin, q="%")) == ["cyx1"]


# --- the CSV export -------------------------------------------------------------------------


def export(client: FlaskClient, admin: dict[str, str], **query: Any) -> list[dict[str, str]]:
    response = client.get("/v1/admin/members.csv", query_string=query, headers=admin)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_the_export_has_a_header_and_a_row_per_member(client, admin, history):
    rows = export(client, admin)

    assert [r["external_id"] for r in rows] == ids(members(client, admin))
    ada = rows[-1]
    assert ada["net_revenue"] == "16000"
    assert ada["email"] == "ada@example.com"
    assert rows[0]["segment"] == ""  # nobuy


def test_the_export_takes_the_same_filters(client, admin, history):
    assert [r["external_id"] for r in export(client, admin, days_since_last_order_max=5)] == [
        "dee",
        "cy_1",
        "ada",
    ]


def test_the_export_defuses_cells_a_spreadsheet_would_run(client, admin, history):
    cy = next(r for r in export(client, admin) if r["external_id"] == "cy_1")

    assert cy["name"] == "'=HYPERLINK(1)"


def test_the_export_does_not_shadow_a_members_insight(client, admin, history):
    ok(client.get("/v1/admin/members/cy_1/insight", headers=admin))


# --- the model's evaluation -----------------------------------------------------------------

SPLIT = T0 + 15 * DAY


@pytest.fixture
def fitted(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """clv.evaluate replaced by one that records its inputs and answers as a fit would."""
    seen: dict[str, Any] = {}

    def evaluate(calibration: Any, holdout_days: float, actual: Any) -> clv.Evaluation:
        seen.update(
            calibration=[list(column) for column in calibration],
            holdout_days=holdout_days,
            actual=list(actual),
        )
        buckets = [clv.FrequencyBucket("0", 3, 0.5, 1), clv.FrequencyBucket("1", 1, 0.7, 1)]
        params = bgnbd.BgNbdParams(r=0.5, alpha=10.0, a=1.0, b=2.0)
        return clv.Evaluation(1.2, 2, buckets, fitting.Fit(params, -12.5, 4))

    monkeypatch.setattr(clv, "evaluate", evaluate)
    return seen


def test_the_evaluation_fits_on_the_history_up_to_the_split(client, admin, history, fitted):
    ok(client.get("/v1/admin/insight/evaluation", query_string={"split": SPLIT}, headers=admin))

    # ada (days 0, 10), bob (1), cy_1 (5), cyx1 (3); dee bought after the split only.
    frequency, recency, age = fitted["calibration"]
    assert (frequency, recency, age) == ([1, 0, 0, 0], [10, 0, 0, 0], [15, 14, 10, 12])
    assert fitted["holdout_days"] == 15


def test_the_evaluation_compares_with_the_repeat_purchase_days_after_the_split(
    client, admin, history, fitted
):
    body = ok(
        client.get(
            "/v1/admin/insight/evaluation",
            query_string={"split": SPLIT.isoformat()},
            headers=admin,
        )
    )

    assert fitted["actual"] == [1, 0, 1, 0]  # ada on day 28, cy_1 on day 25
    assert dt.datetime.fromisoformat(body["end"]) == AS_OF
    assert body["holdout_days"] == 15
    assert (body["predicted_total"], body["actual_total"], body["customers"]) == (1.2, 2, 4)
    assert body["by_frequency"][1] == {
        "frequency": "1",
        "customers": 1,
        "predicted": 0.7,
        "actual": 1,
    }
    assert body["params"] == {
        "bg_nbd": {"r": 0.5, "alpha": 10.0, "a": 1.0, "b": 2.0},
        "bg_nbd_limit": False,
    }


def test_a_split_after_the_end_is_a_validation_error(client, admin, history):
    response = client.get(
        "/v1/admin/insight/evaluation",
        query_string={"split": (AS_OF + DAY).isoformat()},
        headers=admin,
    )

    assert "split" in problem(response, 422, "validation_error")["errors"]


def test_a_history_that_identifies_no_model_cannot_be_evaluated(client, admin, history):
    before_anything = (T0 - 10 * DAY).isoformat()

    problem(
        client.get(
            "/v1/admin/insight/evaluation",
            query_string={"split": before_anything},
            headers=admin,
        ),
        422,
        "evaluation_not_possible",
    )


def test_the_split_is_required(client, admin):
    problem(client.get("/v1/admin/insight/evaluation", headers=admin), 422, "validation_error")


# --- a history the model fits ---------------------------------------------------------------


@pytest.fixture
def forty_buyers(app: Flask) -> None:
    """Buyer k (0..39) buys every (k % 7 + 3) days from day k % 5 until a last day that
    depends on k (a third once, a third for under a month, a third for months), for
    (k % 4 + 1) * 10.00 a time; refreshed as of day 120. So small and regular a history shows
    no spread in dropout between buyers: the model fitted is BG/NBD's limit."""
    with app.app_context():
        for k in range(40):
            member = f"k{k:02d}"
            MemberFactory(external_id=member, now=T0 - DAY)
            every = k % 7 + 3
            # A third buy once, a third stop within the first month: people drop out.
            last = (k % 5 + 1, 15 + k % 15, 40 + (k * 13) % 80)[k % 3]
            for n, day in enumerate(range(k % 5, last, every)):
                OrderFactory(
                    order_id=f"{member}-{n}",
                    member_id=member,
                    worth=(k % 4 + 1) * 10,
                    now=T0 + day * DAY,
                )
        insight.refresh(db.session, as_of=T0 + 120 * DAY)


def predicted_values(client: FlaskClient, admin: dict[str, str]) -> dict[str, int]:
    page = members(client, admin, limit=200)
    return {item["external_id"]: item["insight"]["predicted_value"] for item in page["items"]}


def test_a_small_regular_history_gets_the_models_limit_flagged(client, admin, forty_buyers):
    model = ok(client.get("/v1/admin/insight", headers=admin))["model"]

    assert model["status"] == "fitted"
    assert model["params"]["bg_nbd_limit"] is True
    assert set(model["params"]["bg_nbd"]) == {"r", "alpha", "dropout"}
    assert 0 < model["params"]["bg_nbd"]["dropout"] < 1
    assert "dropout is not identifiable" in model["detail"]
    member = ok(client.get("/v1/admin/members/k05/insight", headers=admin))
    assert 0 <= member["probability_alive"] <= 1
    assert member["expected_purchases"] >= 0


def test_a_fitted_model_gives_deciles_and_filters_by_predicted_value(client, admin, forty_buyers):
    values = predicted_values(client, admin)
    assert len(values) == 40
    assert all(value >= 0 for value in values.values())

    body = ok(client.get("/v1/admin/insight", headers=admin))
    assert body["model"]["status"] == "fitted"
    assert body["model"]["horizon_days"] == 365
    deciles = body["predicted_value"]
    assert [(d["decile"], d["members"]) for d in deciles] == [(n, 4) for n in range(1, 11)]
    ranked = sorted(values.values())
    for d in deciles:
        four = ranked[4 * d["decile"] - 4 : 4 * d["decile"]]
        assert (d["min"], d["max"], d["total"]) == (four[0], four[-1], sum(four))
    assert body["predicted_total"] == sum(ranked)

    low, high = deciles[8]["min"], deciles[8]["max"]
    rich = members(client, admin, predicted_value_min=low)
    assert ids(rich) == sorted((m for m, v in values.items() if v >= low), reverse=True)
    band = members(client, admin, predicted_value_min=low, predicted_value_max=high)
    assert ids(band) == sorted((m for m, v in values.items() if low <= v <= high), reverse=True)


def test_the_evaluation_of_a_real_fit_compares_predicted_and_actual(client, admin, forty_buyers):
    body = ok(
        client.get(
            "/v1/admin/insight/evaluation",
            query_string={"split": (T0 + 60 * DAY).isoformat()},
            headers=admin,
        )
    )

    assert body["holdout_days"] == 60
    assert body["customers"] == 40
    assert sum(b["customers"] for b in body["by_frequency"]) == 40
    assert sum(b["actual"] for b in body["by_frequency"]) == body["actual_total"]
    assert body["actual_total"] > 0
    assert body["predicted_total"] > 0


def test_a_range_whose_max_is_below_its_min_is_a_validation_error(client, admin):
    response = client.get(
        "/v1/admin/members",
        query_string={"days_since_last_order_min": 10, "days_since_last_order_max": 5},
        headers=admin,
    )

    assert "days_since_last_order_max" in problem(response, 422, "validation_error")["errors"]
