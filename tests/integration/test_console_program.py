"""The console's program page edits every setting the API's PATCH /admin/program does, the
referral rewards included, through the same service and audit."""

from __future__ import annotations

import re

import sqlalchemy as sa

from loyalty.audit.models import AuditEntry
from loyalty.extensions import db
from loyalty.program.services import settings_view
from tests.console import csrf_token, sign_in
from tests.factories import ApiKeyFactory
from tests.helpers import services

FORM = {
    "currency": "USD",
    "point_value_points": "100",
    "point_value_amount": "100",
    "pending_days": "14",
    "expiry_policy": "never",
    "expiry_months": "",
    "hold_ttl_seconds": "900",
    "max_redemption_percent": "50",
    "min_redemption_points": "0",
    "tier_window_months": "12",
    "referral_referrer_points": "500",
    "referral_friend_points": "250",
    "referral_max_per_period": "3",
    "referral_period_days": "30",
}


def signed_in(app, client) -> None:
    with services(app):
        key = ApiKeyFactory(name="ops", scopes=("admin",))
    sign_in(client, key)


def save(client, **changes: str):
    token = csrf_token(client, "/admin/program")
    return client.post("/admin/program", data={**FORM, **changes, "csrf_token": token})


def test_the_program_page_saves_the_referral_rewards_and_audits_them(app, client):
    signed_in(app, client)

    response = save(client)

    assert response.status_code == 302
    with services(app) as session:
        settings = settings_view(session)
        assert (
            settings.referral_referrer_points,
            settings.referral_friend_points,
            settings.referral_max_per_period,
            settings.referral_period_days,
        ) == (500, 250, 3, 30)
        entry = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id.desc())).first()
        assert entry is not None
        assert entry.actor == "ops"
    page = client.get("/admin/program").text
    [field] = re.findall(r'<input id="referral_referrer_points"[^>]*>', page)
    assert 'value="500"' in field


def test_a_blank_limit_means_no_limit(app, client):
    signed_in(app, client)

    assert save(client, referral_max_per_period="").status_code == 302

    with services(app) as session:
        assert settings_view(session).referral_max_per_period is None


def test_a_referral_reward_past_the_api_bound_is_refused_and_nothing_changes(app, client):
    signed_in(app, client)
    with services(app) as session:
        before = settings_view(session)

    response = save(client, referral_friend_points="-1", referral_period_days="0")

    assert response.status_code == 422
    assert 'id="referral_friend_points-error"' in response.text
    assert 'id="referral_period_days-error"' in response.text
    with app.app_context():
        assert settings_view(db.session()) == before
