"""The member page's account side in the console: marketing consent, the live lots, the
app's member tokens (and signing them out), exporting everything held, merging into another
member and erasing personal data; each through the API's services, audited under the
signed-in key's name."""

from __future__ import annotations

import datetime as dt
import html
import json
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from loyalty.audit.models import AuditEntry
from loyalty.auth import member_tokens
from loyalty.auth.models import ApiKey
from loyalty.membership import adjustments
from loyalty.membership import services as members
from loyalty.rewards import definitions as reward_definitions
from loyalty.rewards import services as rewards
from loyalty.rewards.definitions import RewardDefinition
from loyalty.rewards.models import RewardKind
from tests.console import csrf_token, sign_in
from tests.factories import ApiKeyFactory, MemberFactory
from tests.helpers import services

PAGE = "/admin/members/cust_42"


@pytest.fixture
def admin(app: Flask) -> str:
    """The raw admin key of "ops-admin", and member cust_42 with 300 points and an app
    signed in (a member token minted by the shop's app key)."""
    with services(app) as session:
        key: str = ApiKeyFactory(name="ops-admin", scopes=("admin",))
        ApiKeyFactory(name="shop-app", scopes=("app",))
        MemberFactory(external_id="cust_42")
        MemberFactory(external_id="cust_43")
        adjustments.adjust(session, "cust_42", 300, "opening balance", "seed")
        app_key = session.scalars(sa.select(ApiKey.id).where(ApiKey.name == "shop-app")).one()
        member_tokens.mint(session, "cust_42", app_key, dt.timedelta(minutes=15))
    return key


def post(client: FlaskClient, path: str, **data: str) -> Any:
    return client.post(path, data={"csrf_token": csrf_token(client, PAGE), **data})


def flashed(client: FlaskClient, response: Any) -> str:
    page = client.get(response.location)
    return html.unescape(page.text.split('<p class="flash', 1)[1].split("</p>", 1)[0])


def actions(app: Flask) -> list[tuple[str | None, str]]:
    with services(app) as session:
        entries = session.scalars(
            sa.select(AuditEntry).where(AuditEntry.target_type == "member").order_by(AuditEntry.id)
        )
        return [(e.actor, e.action) for e in entries]


def test_the_page_shows_consent_lots_and_the_apps_sign_ins(client, admin):
    sign_in(client, admin)

    page = client.get(PAGE).text

    assert "Marketing consent: email yes" in page
    lots = page.split('id="lots"')[1].split("</section>")[0]
    assert '<td data-label="Left" class="num">300 of 300</td>' in lots
    tokens = page.split('id="tokens"')[1].split("</section>")[0]
    assert "<td>shop-app</td>" in tokens
    assert "Sign out of every device" in tokens


def test_signing_the_app_out_revokes_its_tokens_and_is_audited(app, client, admin):
    sign_in(client, admin)

    response = post(client, f"{PAGE}/tokens/revoke")

    assert "Signed out of every device" in flashed(client, response)
    assert "No live member token" in client.get(PAGE).text
    assert ("ops-admin", "member_tokens.revoke") in actions(app)


def test_the_export_is_a_json_download_of_everything_held_and_audited(app, client, admin):
    sign_in(client, admin)

    response = client.get(f"{PAGE}/export.json")

    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == 'attachment; filename="cust_42.json"'
    document = json.loads(response.text)
    assert document["profile"]["external_id"] == "cust_42"
    assert document["balance"]["available"] == 300
    assert ("ops-admin", "member.export") in actions(app)


def test_merging_moves_the_points_to_the_survivor(app, client, admin):
    sign_in(client, admin)

    response = post(client, f"{PAGE}/merge", into="cust_43")

    assert "Merged into cust_43" in flashed(client, response)
    with services(app) as session:
        assert members.card(session, "cust_43").available == 300
        assert members.card(session, "cust_42").status == "closed"


def test_erasing_needs_the_members_id_typed_again(app, client, admin):
    sign_in(client, admin)

    refused = post(client, f"{PAGE}/erase", confirm="cust_4")
    assert "Not erased" in flashed(client, refused)

    erased = post(client, f"{PAGE}/erase", confirm="cust_42")

    assert erased.location.startswith("/admin/members/erased:")
    assert "Erased: the member is now erased:" in flashed(client, erased)
    page = client.get(erased.location).text
    assert "cust_42" not in page
    assert "Erase personal data" not in page  # closed: nothing more to erase or merge


def test_an_unused_reward_code_is_cancelled_from_the_page_and_its_points_come_back(
    app, client, admin
):
    with services(app) as session:
        reward = reward_definitions.create_reward(
            session,
            RewardDefinition(name="Mug", kind=RewardKind.PRODUCT, cost_points=100, stock=5),
            "seed",
        )
        redeemed = rewards.redeem(session, "cust_42", reward.public_id)
    sign_in(client, admin)
    assert ">Cancel</button>" in client.get(PAGE).text

    response = post(client, f"{PAGE}/reward-redemptions/{redeemed.public_id}/cancel")

    assert "Cancelled" in flashed(client, response)
    with services(app) as session:
        assert members.card(session, "cust_42").available == 300
    with services(app) as session:
        entry = session.scalars(
            sa.select(AuditEntry).where(AuditEntry.target_id == str(redeemed.public_id))
        ).one()
    assert (entry.actor, entry.action) == ("ops-admin", "reward_redemption.cancel")
