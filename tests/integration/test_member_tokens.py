"""Member tokens' service: the jobs' purge of ended tokens, and revocation seen by every
worker at once."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import Session

from loyalty.auth import member_tokens
from loyalty.auth.models import ApiKey, MemberToken
from loyalty.auth.services import Caller, create_key
from loyalty.errors import ValidationFailed
from tests.factories import ApiKeyFactory, MemberFactory, auth
from tests.helpers import app_built, created, ok, problem, services, when

T0 = when("2026-12-01T08:00:00+00:00")
MINUTE = dt.timedelta(minutes=1)
DAY = dt.timedelta(days=1)


@pytest.fixture
def key_id(session: Session) -> int:
    ApiKeyFactory(name="shop-backend", scopes=("app",))
    MemberFactory(c1=True)
    return session.scalar(sa.select(ApiKey.id).where(ApiKey.name == "shop-backend"))


def mint_at(session: Session, key_id: int, now: dt.datetime, minutes: int = 15) -> str:
    minted = member_tokens.mint(session, "c1", key_id, minutes * MINUTE, now=now)
    return minted.token


def kept(session: Session) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(MemberToken))


def test_the_purge_deletes_tokens_a_day_past_their_end_and_keeps_the_rest(session, key_id):
    mint_at(session, key_id, T0)  # ended at 08:15 on the 1st
    recent = mint_at(session, key_id, T0 + DAY)  # ends at 08:15 on the 2nd

    purged = member_tokens.purge_ended(session, now=T0 + DAY + 15 * MINUTE + MINUTE)

    assert (purged, kept(session)) == (1, 1)
    caller = member_tokens.authenticate(session, recent, now=T0 + DAY)
    assert isinstance(caller, Caller)
    assert caller.member_external_id == "c1"


def test_the_purge_keeps_an_ended_token_for_a_day(session, key_id):
    mint_at(session, key_id, T0)

    assert member_tokens.purge_ended(session, now=T0 + 15 * MINUTE + DAY) == 0
    assert kept(session) == 1


def test_the_purge_goes_through_every_batch(session, key_id):
    for _ in range(5):
        mint_at(session, key_id, T0)

    assert member_tokens.purge_ended(session, now=T0 + 2 * DAY, batch_size=2) == 5
    assert kept(session) == 0


def test_an_expired_token_is_refused_as_expired_and_an_unknown_one_as_unknown(session, key_id):
    token = mint_at(session, key_id, T0, minutes=1)

    assert member_tokens.authenticate(session, token, now=T0 + MINUTE) is (
        member_tokens.Refusal.EXPIRED
    )
    assert member_tokens.authenticate(session, token + "x", now=T0) is (
        member_tokens.Refusal.UNKNOWN
    )


# Two apps on one database stand for two workers; each has its own connections.
@pytest.mark.committed
def test_a_revocation_takes_effect_at_once_in_every_worker(app: Flask):
    with services(app):
        raw_key = ApiKeyFactory(name="shop-backend", scopes=("app",))
        MemberFactory(c1=True)
    key = auth(raw_key)
    first = app.test_client()
    with app_built(app.config["SQLALCHEMY_DATABASE_URI"]) as other_worker:
        second = other_worker.test_client()
        token = created(first.post("/v1/members/c1/tokens", json={}, headers=key))
        ok(second.get("/v1/members/c1", headers=auth(token["token"])))

        revoked = first.delete(f"/v1/members/c1/tokens/{token['id']}", headers=key)

        assert revoked.status_code == 204
        problem(second.get("/v1/members/c1", headers=auth(token["token"])), 401, "unauthorized")


def test_no_api_key_can_hold_the_member_scope(session):
    with pytest.raises(ValidationFailed) as refused:
        create_key(session, "sneaky", ["member"])

    assert refused.value.extra["errors"] == {"scopes": ["Choose from checkout, app, admin."]}
