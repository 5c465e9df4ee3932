"""Member tokens: the shop's backend mints a short-lived token for one member, and the
customer app calls that member's card, history, benefits, the rewards catalog and reward
redemption directly with it; for another member, or on any other route, it is refused.

Time is the test's: the tokens' clock (``loyalty.auth.member_tokens.utcnow``) is set by it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from flask.views import MethodView
from werkzeug.test import TestResponse

from loyalty.api.auth import check_every_route_is_scoped, requires
from loyalty.auth import member_tokens
from loyalty.auth.models import MemberToken
from loyalty.auth.services import revoke_key
from loyalty.cli.openapi import openapi_document
from loyalty.extensions import db
from tests.api.test_auth import PATH_ARGUMENT, call, v1_operations
from tests.factories import ApiKeyFactory, auth
from tests.helpers import build_app, created, ok, problem, when

MINUTE = dt.timedelta(minutes=1)
TOTE = {"name": "Tote bag", "kind": "product", "cost_points": 500}
# The operations a member token may call (for its own member), as the route table says.
MEMBER_OPERATIONS = {
    ("GET", "/v1/members/<string:external_id>"),
    ("GET", "/v1/members/<string:external_id>/transactions"),
    ("GET", "/v1/members/<string:external_id>/benefits"),
    ("GET", "/v1/members/<string:external_id>/referrals"),
    ("GET", "/v1/rewards"),
    ("POST", "/v1/members/<string:external_id>/reward-redemptions"),
}


class Clock:
    """The member tokens' clock: `now` is whatever the test says."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    moment = Clock(when("2026-12-02T08:00:00+00:00"))
    monkeypatch.setattr(member_tokens, "utcnow", moment)
    return moment


@pytest.fixture
def mint(client: FlaskClient, app_key: dict[str, str]) -> Callable[..., dict[str, str]]:
    """mint("c1") -> a token for c1, minted by the app key, as the app's headers; `key`
    mints with other headers, `ttl_seconds` asks for that lifetime."""

    def make(
        external_id: str = "c1", key: dict[str, str] | None = None, **body: int
    ) -> dict[str, str]:
        response = client.post(
            f"/v1/members/{external_id}/tokens", json=body, headers=key or app_key
        )
        return auth(created(response)["token"])

    return make


@pytest.fixture
def c2(client: FlaskClient, checkout: dict[str, str]) -> str:
    created(client.post("/v1/members", json={"external_id": "c2"}, headers=checkout))
    return "c2"


def member_calls(client: FlaskClient, member: str, headers: dict[str, str]) -> list[TestResponse]:
    """The five member-facing operations, for `member` (a reward that does not exist is
    redeemed: the answer past authorization is a 404)."""
    return [
        client.get(f"/v1/members/{member}", headers=headers),
        client.get(f"/v1/members/{member}/transactions", headers=headers),
        client.get(f"/v1/members/{member}/benefits", headers=headers),
        client.get(f"/v1/rewards?member_id={member}", headers=headers),
        client.post(
            f"/v1/members/{member}/reward-redemptions",
            json={"reward_id": "00000000-0000-0000-0000-000000000000"},
            headers=headers,
        ),
    ]


def close(client: FlaskClient, admin: dict[str, str], member: str) -> None:
    ok(client.patch(f"/v1/admin/members/{member}", json={"status": "closed"}, headers=admin))


# --- minting ---------------------------------------------------------------------------------


def test_an_app_key_mints_a_token_for_a_member_for_fifteen_minutes(client, app_key, member, clock):
    body = created(client.post("/v1/members/c1/tokens", json={}, headers=app_key))

    assert body["member_id"] == "c1"
    assert body["token"].startswith("lmt_")
    assert when(body["expires_at"]) == clock.now + 15 * MINUTE


def test_minting_needs_no_body(client, app_key, member):
    assert client.post("/v1/members/c1/tokens", headers=app_key).status_code == 201


def test_an_admin_key_mints_too_but_a_checkout_key_does_not(client, admin, checkout, member):
    assert client.post("/v1/members/c1/tokens", json={}, headers=admin).status_code == 201
    problem(client.post("/v1/members/c1/tokens", json={}, headers=checkout), 403, "forbidden")


def test_minting_needs_a_key(client, member):
    problem(client.post("/v1/members/c1/tokens", json={}), 401, "unauthorized")


def test_minting_for_an_unknown_member_is_404(client, app_key):
    problem(client.post("/v1/members/nobody/tokens", json={}, headers=app_key), 404, "not_found")


def test_minting_for_a_closed_member_is_refused(client, app_key, admin, member):
    close(client, admin, member)

    response = client.post("/v1/members/c1/tokens", json={}, headers=app_key)

    problem(response, 409, "member_closed")


def test_minting_may_ask_for_a_shorter_or_longer_life_within_an_hour(
    client, app_key, member, clock
):
    short = client.post("/v1/members/c1/tokens", json={"ttl_seconds": 60}, headers=app_key)
    hour = client.post("/v1/members/c1/tokens", json={"ttl_seconds": 3600}, headers=app_key)

    assert when(created(short)["expires_at"]) == clock.now + MINUTE
    assert when(created(hour)["expires_at"]) == clock.now + 60 * MINUTE


@pytest.mark.parametrize("ttl", [59, 3601, 0, -60, "900", 900.5])
def test_a_lifetime_out_of_bounds_is_a_validation_error(client, app_key, member, ttl):
    response = client.post("/v1/members/c1/tokens", json={"ttl_seconds": ttl}, headers=app_key)

    assert "ttl_seconds" in problem(response, 422, "validation_error")["errors"]


def test_the_default_lifetime_is_the_setting(
    client, app, app_key, member, clock, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setitem(app.config, "MEMBER_TOKEN_TTL_SECONDS", 300)

    body = created(client.post("/v1/members/c1/tokens", json={}, headers=app_key))

    assert when(body["expires_at"]) == clock.now + 5 * MINUTE


@pytest.mark.parametrize("seconds", [59, 3601])
def test_a_default_lifetime_out_of_bounds_stops_the_start(tmp_path, seconds):
    with pytest.raises(ValueError, match="LOYALTY_MEMBER_TOKEN_TTL_SECONDS"):
        build_app(f"sqlite:///{tmp_path / 'x.db'}", MEMBER_TOKEN_TTL_SECONDS=seconds)


def test_only_the_tokens_hash_is_stored(app, client, app_key, member):
    body = created(client.post("/v1/members/c1/tokens", json={}, headers=app_key))

    with app.app_context():
        rows = db.session.execute(sa.select(MemberToken.__table__)).all()
    assert len(rows) == 1
    assert rows[0].token_hash == hashlib.sha256(body["token"].encode()).hexdigest()
    assert body["token"] not in json.dumps([str(value) for value in rows[0]])


# --- use ---------------------------------------------------------------------------------------


def test_a_token_reads_its_members_card_history_benefits_and_catalog(client, admin, funded, mint):
    token = mint("c1")

    card = ok(client.get("/v1/members/c1", headers=token))
    history = ok(client.get("/v1/members/c1/transactions", headers=token))
    benefits = ok(client.get("/v1/members/c1/benefits", headers=token))
    created(client.post("/v1/admin/rewards", json=TOTE, headers=admin))
    catalog = ok(client.get("/v1/rewards?member_id=c1", headers=token))

    assert card["balance"]["available"] == 1000
    assert [item["points"] for item in history["items"]] == [1000]
    assert benefits == {"items": []}
    assert [(item["name"], item["redeemable"]) for item in catalog["items"]] == [("Tote bag", True)]


def test_a_token_redeems_a_reward_for_its_member(client, admin, funded, mint):
    token = mint("c1")
    reward = created(client.post("/v1/admin/rewards", json=TOTE, headers=admin))

    redeemed = created(
        client.post(
            "/v1/members/c1/reward-redemptions",
            json={"reward_id": reward["id"]},
            headers={**token, "Idempotency-Key": "redeem-1"},
        )
    )

    assert (redeemed["member_id"], redeemed["points"]) == ("c1", 500)
    assert ok(client.get("/v1/members/c1", headers=token))["balance"]["available"] == 500


def test_a_retry_with_a_fresh_token_replays_the_redemption(client, admin, funded, mint):
    """The app's token may expire between a redemption and its retry: the retry, under a
    new token from the same backend, must not redeem twice."""
    reward = created(client.post("/v1/admin/rewards", json=TOTE, headers=admin))
    calls = [
        client.post(
            "/v1/members/c1/reward-redemptions",
            json={"reward_id": reward["id"]},
            headers={**mint("c1"), "Idempotency-Key": "redeem-1"},
        )
        for _ in range(2)
    ]

    assert [c.status_code for c in calls] == [201, 201]
    assert calls[0].json == calls[1].json
    assert calls[1].headers["Idempotent-Replayed"] == "true"


def test_head_admits_a_token_like_get(client, member, c2, mint):
    token = mint("c1")

    assert client.head("/v1/members/c1", headers=token).status_code == 200
    assert client.head("/v1/members/c2", headers=token).status_code == 403


def test_a_token_is_refused_for_another_member(client, member, c2, mint):
    token = mint("c1")

    for response in member_calls(client, "c2", token):
        problem(response, 403, "token_member_mismatch")


def test_a_token_is_refused_for_a_member_that_does_not_exist(client, member, mint):
    """Refused before any lookup: the answer says nothing of whether the member exists."""
    token = mint("c1")

    for response in member_calls(client, "nobody", token):
        problem(response, 403, "token_member_mismatch")


def test_the_catalog_refuses_a_second_member_slipped_into_the_query(client, member, c2, mint):
    token = mint("c1")

    for query in ("member_id=c1&member_id=c2", "member_id=c2&member_id=c1", ""):
        problem(client.get(f"/v1/rewards?{query}", headers=token), 403, "token_member_mismatch")


def test_the_route_table_says_which_operations_admit_a_token(app):
    admitting = {(op.method, op.rule) for op in v1_operations(app) if "member" in op.scopes}

    assert admitting == MEMBER_OPERATIONS


def test_every_other_operation_refuses_a_token(app, client, member, mint):
    token = mint("c1")
    others = [op for op in v1_operations(app) if "member" not in op.scopes]

    assert others
    wrong = []
    for operation in others:
        response = call(client, operation, token)
        if response.status_code != 403 or response.json["code"] != "member_token_not_allowed":
            wrong.append(f"{operation}: {response.status_code} {response.json}")
    assert wrong == []


def test_an_unknown_token_is_unauthorized(client, member):
    for response in member_calls(client, "c1", auth("lmt_" + "x" * 43)):
        problem(response, 401, "unauthorized")


# --- expiry and revocation ---------------------------------------------------------------------


def test_a_token_works_until_it_expires(client, member, mint, clock):
    token = mint("c1")

    clock.now += 15 * MINUTE - dt.timedelta(seconds=1)
    ok(client.get("/v1/members/c1", headers=token))
    clock.now += dt.timedelta(seconds=1)
    expired = client.get("/v1/members/c1", headers=token)

    assert problem(expired, 401, "token_expired")["detail"].startswith("This member token")


def test_an_expired_token_is_expired_on_every_member_route(client, member, mint, clock):
    token = mint("c1", ttl_seconds=60)

    clock.now += MINUTE
    for response in member_calls(client, "c1", token):
        problem(response, 401, "token_expired")


def test_revoking_a_token_ends_it_at_once_and_no_other(client, app_key, member):
    first = created(client.post("/v1/members/c1/tokens", json={}, headers=app_key))
    second = created(client.post("/v1/members/c1/tokens", json={}, headers=app_key))

    response = client.delete(f"/v1/members/c1/tokens/{first['id']}", headers=app_key)

    assert response.status_code == 204
    problem(client.get("/v1/members/c1", headers=auth(first["token"])), 401, "unauthorized")
    ok(client.get("/v1/members/c1", headers=auth(second["token"])))


def test_revoking_a_token_twice_is_harmless(client, app_key, member):
    token = created(client.post("/v1/members/c1/tokens", json={}, headers=app_key))

    for _ in range(2):
        response = client.delete(f"/v1/members/c1/tokens/{token['id']}", headers=app_key)
        assert response.status_code == 204


def test_revoking_another_members_token_is_404(client, app_key, member, c2):
    token = created(client.post("/v1/members/c1/tokens", json={}, headers=app_key))

    response = client.delete(f"/v1/members/c2/tokens/{token['id']}", headers=app_key)

    problem(response, 404, "not_found")
    ok(client.get("/v1/members/c1", headers=auth(token["token"])))


def test_revoking_all_of_a_members_tokens_counts_the_live_ones(
    client, app_key, member, c2, mint, clock
):
    mint("c1", ttl_seconds=60)
    live = [mint("c1"), mint("c1")]
    other = mint("c2")
    clock.now += MINUTE

    revoked = ok(client.delete("/v1/members/c1/tokens", headers=app_key))

    assert revoked == {"revoked": 2}
    for token in live:
        problem(client.get("/v1/members/c1", headers=token), 401, "unauthorized")
    ok(client.get("/v1/members/c2", headers=other))


def test_revoking_for_an_unknown_member_is_404(client, app_key):
    problem(client.delete("/v1/members/nobody/tokens", headers=app_key), 404, "not_found")


def test_a_token_cannot_revoke_tokens(client, member, mint):
    token = mint("c1")

    response = client.delete("/v1/members/c1/tokens", headers=token)

    problem(response, 403, "member_token_not_allowed")


def test_revoking_the_key_that_minted_a_token_ends_the_token(app, client, member, mint):
    with app.app_context():
        raw = ApiKeyFactory(name="shop-backend", scopes=("app",))
    token = mint("c1", key=auth(raw))
    with app.app_context():
        revoke_key(db.session, "shop-backend")

    problem(client.get("/v1/members/c1", headers=token), 401, "unauthorized")


def test_closing_the_member_ends_their_tokens(client, admin, member, mint):
    token = mint("c1")

    close(client, admin, member)

    problem(client.get("/v1/members/c1", headers=token), 401, "unauthorized")


def test_a_suspended_member_reads_their_card_but_cannot_redeem(client, admin, funded, mint):
    token = mint("c1")
    reward = created(client.post("/v1/admin/rewards", json=TOTE, headers=admin))
    ok(client.patch("/v1/admin/members/c1", json={"status": "suspended"}, headers=admin))

    card = ok(client.get("/v1/members/c1", headers=token))
    redeemed = client.post(
        "/v1/members/c1/reward-redemptions", json={"reward_id": reward["id"]}, headers=token
    )

    assert card["status"] == "suspended"
    problem(redeemed, 422, "member_inactive")


# --- the OpenAPI document ----------------------------------------------------------------------


def test_the_document_says_which_operations_admit_a_member_token(app):
    spec = json.loads(openapi_document(app))

    scheme = spec["components"]["securitySchemes"]["memberToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for operation in v1_operations(app):
        path = PATH_ARGUMENT.sub(r"{\1}", operation.rule)
        security = spec["paths"][path][operation.method.lower()]["security"]
        if (operation.method, operation.rule) in MEMBER_OPERATIONS:
            assert security == [{"bearerAuth": []}, {"memberToken": []}], str(operation)
        else:
            assert security == [{"bearerAuth": []}], str(operation)


def test_the_document_describes_minting_and_revoking(app):
    paths = json.loads(openapi_document(app))["paths"]

    mint_operation = paths["/v1/members/{external_id}/tokens"]["post"]
    assert set(mint_operation["responses"]) >= {"201", "401", "403", "404", "409", "422"}
    assert "delete" in paths["/v1/members/{external_id}/tokens"]
    assert "204" in paths["/v1/members/{external_id}/tokens/{token_id}"]["delete"]["responses"]


def test_a_route_admitting_tokens_must_name_a_member():
    class Nameless(MethodView):
        @requires("app", "member")
        def get(self) -> str:
            return ""

    probe = Flask("probe")
    probe.add_url_rule("/v1/nameless", view_func=Nameless.as_view("nameless"))

    with pytest.raises(RuntimeError, match="names no member"):
        check_every_route_is_scoped(probe)
