"""The console's forms for tiers, rewards and webhooks through the Flask test client: each
creates and changes through the API's schemas and services, so each write is audited as
through the API under the signed-in key's name; a refusal, the form's, the schema's or the
service's, is shown next to its field with what was typed, and nothing is written.

No app context stays pushed across the client's requests (see test_console_security.py).
"""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from loyalty.audit.models import AuditEntry
from loyalty.members.models import Member
from loyalty.rewards import definitions as rewards
from loyalty.rewards.definitions import RewardDefinition
from loyalty.rewards.models import RewardKind
from loyalty.tiers import definitions as tiers
from loyalty.tiers.exceptions import TierNotFound
from loyalty.tiers.models import Tier
from loyalty.webhooks import endpoints as webhooks
from loyalty.webhooks import outbox
from loyalty.webhooks.endpoints import NewWebhook
from loyalty.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from loyalty.webhooks.outbox import EVENT_TYPES
from loyalty.webhooks.services import dispatch
from tests.console import csrf_token, sign_in
from tests.factories import ApiKeyFactory, MemberFactory, TierFactory
from tests.helpers import services

GOLD_FORM = {
    "code": "gold",
    "name": "Gold",
    "rank": "2",
    "threshold": "500",
    "retention_months": "6",
    "benefits-0-code": "free_shipping",
    "benefits-0-params": "",
    "benefits-1-code": "points_multiplier",
    "benefits-1-params": "factor = 1.5",
}
COUPON_FORM = {
    "name": "10% off shoes",
    "description": "One pair.",
    "kind": "coupon",
    "cost_points": "400",
    "value_amount": "",
    "percent_off": "",
    "valid_days": "",
    "stock": "3",
    "min_tier": "silver",
    "segments": "",
    "per_member_limit": "1",
    "starts_at": "2027-01-01T09:00",
    "ends_at": "2027-02-01T09:00",
    "codes": "SHOE-1\r\nSHOE-2\r\n\r\nSHOE-3\r\n",
    "active": "y",
}


@pytest.fixture
def admin(app: Flask) -> str:
    """The raw admin key of "ops-admin", and a silver tier (rank 1) to point at."""
    with services(app):
        key: str = ApiKeyFactory(name="ops-admin", scopes=("admin",))
        TierFactory(silver=True)
    return key


@pytest.fixture
def signed_in(client: FlaskClient, admin: str) -> FlaskClient:
    sign_in(client, admin)
    return client


def post(client: FlaskClient, path: str, data: dict[str, str], token_from: str) -> TestResponse:
    return client.post(path, data={**data, "csrf_token": csrf_token(client, token_from)})


def audited(app: Flask, target_type: str) -> list[tuple[str, str, str]]:
    with services(app) as session:
        entries = session.scalars(
            sa.select(AuditEntry).where(AuditEntry.target_type == target_type)
        )
        return [(e.actor, e.action, e.target_id) for e in entries.all()]


def audit_after(app: Flask, action: str) -> dict[str, Any]:
    with services(app) as session:
        entry = session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
        ).all()[-1]
        assert entry.after is not None
        return entry.after


def field_error(response: TestResponse, name: str) -> str:
    """The message shown next to the field `name` (empty when there is none)."""
    marker = f'<p class="error" id="{name}-error">'
    if marker not in response.text:
        return ""
    return html.unescape(response.text.split(marker, 1)[1].split("</p>", 1)[0])


def top_error(response: TestResponse) -> str:
    marker = '<p class="flash error" role="alert">'
    if marker not in response.text:
        return ""
    return html.unescape(response.text.split(marker, 1)[1].split("</p>", 1)[0])


def tier(app: Flask, code: str) -> tiers.DefinedTier:
    with services(app) as session:
        return tiers.find_tier(session, code)


# Tiers


def test_an_admin_creates_a_tier_with_benefits_and_it_is_audited(app, signed_in):
    response = post(signed_in, "/admin/tiers/new", GOLD_FORM, "/admin/tiers/new")

    assert response.status_code == 302, response.text
    assert response.location == "/admin/tiers"
    gold = tier(app, "gold")
    assert (gold.name, gold.rank, gold.threshold, gold.retention_months) == ("Gold", 2, 500, 6)
    assert gold.benefits == (
        {"code": "free_shipping", "params": {}},
        {"code": "points_multiplier", "params": {"factor": "1.5"}},
    )
    assert ("ops-admin", "tier.create", "gold") in audited(app, "tier")
    listed = signed_in.get("/admin/tiers").text
    assert "Tier &#39;Gold&#39; created." in listed
    assert "/admin/tiers/gold/edit" in listed


def test_a_benefit_parameter_is_a_number_or_text_as_typed(app, signed_in):
    form = {
        **GOLD_FORM,
        "benefits-0-code": "birthday_gift",
        "benefits-0-params": "points = 250\r\nnote = from the shop",
    }

    post(signed_in, "/admin/tiers/new", form, "/admin/tiers/new")

    assert tier(app, "gold").benefits[0] == {
        "code": "birthday_gift",
        "params": {"points": 250, "note": "from the shop"},
    }


def test_the_tier_form_refuses_what_the_api_refuses_next_to_each_field(app, signed_in):
    form = {
        **GOLD_FORM,
        "code": "Gold!",
        "rank": "0",
        "benefits-1-params": "factor = 0.5",  # the schema's: a multiplier must be above 1
    }

    response = post(signed_in, "/admin/tiers/new", form, "/admin/tiers/new")

    assert response.status_code == 422
    assert field_error(response, "code") == "Lowercase letters, digits, _; 1-32."
    assert "between 1 and 1000" in field_error(response, "rank")
    assert 'value="Gold!"' in response.text  # what was typed stays
    assert ("ops-admin", "tier.create", "gold") not in audited(app, "tier")


def test_a_benefit_refused_by_the_schema_is_shown_on_its_own_row(app, signed_in):
    # The first row is left empty: the body's second benefit is the form's third row.
    form = {
        **GOLD_FORM,
        "benefits-0-code": "",
        "benefits-2-code": "points_multiplier",
        "benefits-2-params": "factor = 0.5",
    }

    response = post(signed_in, "/admin/tiers/new", form, "/admin/tiers/new")

    assert response.status_code == 422
    assert "above 1 and at most 100" in field_error(response, "benefits-2-params")
    assert field_error(response, "benefits-1-params") == ""
    with pytest.raises(TierNotFound), services(app) as session:
        tiers.find_tier(session, "gold")


@pytest.mark.parametrize(
    ("row", "name", "message"),
    [
        ({"benefits-0-params": "factor 1.5"}, "benefits-0-params", "Line 1: write key = value."),
        (
            {"benefits-0-code": "", "benefits-0-params": "factor = 2"},
            "benefits-0-code",
            "Name the benefit these parameters are for.",
        ),
        ({"benefits-0-code": "Free Shipping"}, "benefits-0-code", "Lowercase letters"),
    ],
)
def test_a_benefit_row_the_form_cannot_read_is_refused(app, signed_in, row, name, message):
    response = post(signed_in, "/admin/tiers/new", {**GOLD_FORM, **row}, "/admin/tiers/new")

    assert response.status_code == 422
    assert message in field_error(response, name)


def test_a_rank_taken_by_another_tier_is_the_services_refusal_at_the_top(app, signed_in):
    response = post(signed_in, "/admin/tiers/new", {**GOLD_FORM, "rank": "1"}, "/admin/tiers/new")

    assert response.status_code == 422
    assert top_error(response) == "A tier with this code or rank already exists."


def test_the_edit_form_shows_the_tier_with_its_benefits_and_spare_rows(app, signed_in):
    with services(app):
        TierFactory(platinum=True)

    page = signed_in.get("/admin/tiers/platinum/edit")

    assert page.status_code == 200
    assert 'name="benefits-0-code" type="text" value="free_shipping"' in page.text
    assert 'name="benefits-1-code" type="text" value="points_multiplier"' in page.text
    assert "\nfactor = &#34;2&#34;</textarea>" in page.text  # text, quoted: not the number 2
    assert 'name="benefits-3-code" type="text" value=""' in page.text  # two spare rows
    assert 'name="benefits-4-code"' not in page.text


def test_a_tier_saved_unchanged_keeps_every_benefit_parameter_as_it_was(app, signed_in):
    params = {"skus": ["tee", "mug"], "note": "true", "points": 250, "factor": "1.5", "gift": None}
    with services(app):
        TierFactory(gold=True, benefits=[{"code": "bundle", "params": params}])
    path = "/admin/tiers/gold/edit"
    page = signed_in.get(path).text
    shown = html.unescape(page.split('name="benefits-0-params">', 1)[1].split("</textarea>")[0])
    form = {"code": "gold", "name": "Gold", "rank": "2", "threshold": "500"}
    form.update({"retention_months": "6", "benefits-0-code": "bundle", "benefits-0-params": shown})

    response = post(signed_in, path, form, path)

    assert response.status_code == 302, response.text
    assert tier(app, "gold").benefits == ({"code": "bundle", "params": params},)


def test_an_admin_changes_a_tiers_threshold_and_benefits_and_it_is_audited(app, signed_in):
    with services(app):
        TierFactory(platinum=True)
    path = "/admin/tiers/platinum/edit"
    form = {
        **GOLD_FORM,
        "code": "platinum",
        "name": "Platinum",
        "rank": "3",
        "threshold": "2500",
        "benefits-0-code": "",  # free shipping removed
        "benefits-0-params": "",
        "benefits-1-params": "factor = 2.5",
    }

    response = post(signed_in, path, form, path)

    assert response.status_code == 302, response.text
    changed = tier(app, "platinum")
    assert changed.threshold == 2500
    assert changed.benefits == ({"code": "points_multiplier", "params": {"factor": "2.5"}},)
    assert ("ops-admin", "tier.update", "platinum") in audited(app, "tier")
    assert audit_after(app, "tier.update")["threshold"] == 2500


def test_a_tiers_code_changes_as_through_the_api(app, signed_in):
    path = "/admin/tiers/silver/edit"
    form = {"code": "bronze", "name": "Bronze", "rank": "1", "threshold": "100"}

    response = post(signed_in, path, {**form, "retention_months": "12"}, path)

    assert response.status_code == 302, response.text
    assert [(t.code, t.name) for t in tiers_now(app)] == [("bronze", "Bronze")]
    assert ("ops-admin", "tier.update", "silver") in audited(app, "tier")
    assert signed_in.get("/admin/tiers/bronze/edit").status_code == 200


def test_a_tier_nobody_is_in_is_deleted_and_it_is_audited(app, signed_in):
    response = post(signed_in, "/admin/tiers/silver/delete", {}, "/admin/tiers/silver/edit")

    assert response.status_code == 302
    assert [t.code for t in tiers_now(app)] == []
    assert ("ops-admin", "tier.delete", "silver") in audited(app, "tier")
    assert "Tier &#39;silver&#39; deleted." in signed_in.get("/admin/tiers").text


def test_a_tier_members_are_in_is_not_deleted(app, signed_in):
    with services(app) as session:
        MemberFactory(external_id="cust_1")
        silver = sa.select(Tier.id).where(Tier.code == "silver").scalar_subquery()
        session.execute(sa.update(Member).values(tier_id=silver))
        session.commit()
    page = signed_in.get("/admin/tiers/silver/edit")
    assert "1 members are in this tier" in page.text
    assert "Delete tier" not in page.text

    response = post(signed_in, "/admin/tiers/silver/delete", {}, "/admin/tiers")

    assert response.status_code == 302
    assert [t.code for t in tiers_now(app)] == ["silver"]
    assert "Not deleted: 1 members are in tier" in html.unescape(signed_in.get("/admin/tiers").text)


def tiers_now(app: Flask) -> list[tiers.DefinedTier]:
    with services(app) as session:
        return tiers.list_tiers(session)


def test_an_unknown_tiers_edit_page_is_the_consoles_404(signed_in):
    assert signed_in.get("/admin/tiers/nobody/edit").status_code == 404


# Rewards


def reward_list(app: Flask) -> list[rewards.RewardView]:
    with services(app) as session:
        return rewards.list_rewards(session)


def codes_left(app: Flask, reward_id: uuid.UUID) -> int | None:
    with services(app) as session:
        return rewards.codes_left(session, rewards.find(session, reward_id).id)


def test_an_admin_creates_a_reward_with_a_code_pool_and_window_and_it_is_audited(app, signed_in):
    response = post(signed_in, "/admin/rewards/new", COUPON_FORM, "/admin/rewards/new")

    assert response.status_code == 302, response.text
    assert response.location == "/admin/rewards"
    [reward] = reward_list(app)
    assert (reward.name, reward.kind, reward.cost_points) == ("10% off shoes", "coupon", 400)
    assert (reward.stock, reward.min_tier, reward.per_member_limit) == (3, "silver", 1)
    assert reward.starts_at == dt.datetime(2027, 1, 1, 9, tzinfo=dt.UTC)
    assert reward.ends_at == dt.datetime(2027, 2, 1, 9, tzinfo=dt.UTC)
    assert reward.description == "One pair."
    assert reward.active
    assert codes_left(app, reward.public_id) == 3
    assert ("ops-admin", "reward.create", str(reward.public_id)) in audited(app, "reward")


@pytest.mark.parametrize(
    ("changes", "name", "message"),
    [
        ({"cost_points": "0"}, "cost_points", "Number must be between 1 and 1000000000."),
        ({"cost_points": "many"}, "cost_points", "Not a valid integer value."),
        ({"starts_at": "next week"}, "starts_at", "Not a valid datetime value."),
        ({"kind": "voucher"}, "kind", "Invalid value"),
    ],
)
def test_the_reward_form_refuses_what_the_api_refuses(app, signed_in, changes, name, message):
    response = post(
        signed_in, "/admin/rewards/new", {**COUPON_FORM, **changes}, "/admin/rewards/new"
    )

    assert response.status_code == 422
    assert message in field_error(response, name)
    assert reward_list(app) == []
    assert audited(app, "reward") == []


@pytest.mark.parametrize(
    ("changes", "name", "message"),
    [
        # the schema's checks across fields
        ({"ends_at": "2026-12-01T09:00"}, "ends_at", "Must be after starts_at."),
        ({"kind": "fixed_discount"}, "value_amount", "Required for fixed_discount rewards."),
        ({"kind": "percent_discount"}, "percent_off", "Required for percent_discount rewards."),
        ({"percent_off": "12.555"}, "percent_off", "at most two decimal places"),
        # each code's bound, naming the code
        (
            {"codes": "SHOE-1\n" + "X" * 101},
            "codes",
            f"'{'X' * 101}': Length must be between 1 and 100.",
        ),
        # the service's: what only the database knows
        ({"min_tier": "gold"}, "min_tier", "No tier with code 'gold'."),
        ({"segments": "vips"}, "segments", "vips"),
        (
            {"kind": "percent_discount", "percent_off": "10", "value_amount": "500"},
            "percent_off",
            "A reward is worth an amount or a percentage, not both.",
        ),
    ],
)
def test_a_reward_refused_past_the_form_is_shown_next_to_its_field(
    app, signed_in, changes, name, message
):
    response = post(
        signed_in, "/admin/rewards/new", {**COUPON_FORM, **changes}, "/admin/rewards/new"
    )

    assert response.status_code == 422
    assert message in field_error(response, name)
    assert reward_list(app) == []


def test_a_percent_off_reward_with_codes_that_expire(app, signed_in):
    form = {**COUPON_FORM, "kind": "percent_discount", "percent_off": "12.5", "valid_days": "30"}

    response = post(signed_in, "/admin/rewards/new", form, "/admin/rewards/new")

    assert response.status_code == 302, response.text
    [reward] = reward_list(app)
    assert (reward.kind, reward.percent_off_bps, reward.valid_days) == (
        "percent_discount",
        1250,
        30,
    )
    assert '<td class="num">12.50%</td>' in signed_in.get("/admin/rewards").text
    page = signed_in.get(f"/admin/rewards/{reward.public_id}/edit").text
    assert re.search(r'<input [^>]*name="percent_off"[^>]*value="12.5">', page)
    assert re.search(r'<input [^>]*name="valid_days"[^>]*value="30">', page)


@pytest.fixture
def mug(app: Flask, admin: str) -> uuid.UUID:
    """A product reward, unlimited, for anyone, created through the service by "seed"."""
    definition = RewardDefinition(name="Mug", kind=RewardKind.PRODUCT, cost_points=900)
    with services(app) as session:
        return rewards.create_reward(session, definition, "seed").public_id


def test_the_reward_edit_form_shows_the_reward_as_it_is(app, signed_in, mug):
    page = signed_in.get(f"/admin/rewards/{mug}/edit")

    assert page.status_code == 200
    assert re.search(r'<input [^>]*name="cost_points"[^>]*value="900">', page.text)
    assert '<option selected value="product">product</option>' in page.text
    assert '<option selected value="">any member</option>' in page.text
    assert "No pool: codes are generated." in page.text


def test_an_admin_changes_a_rewards_stock_window_and_codes_and_it_is_audited(app, signed_in, mug):
    path = f"/admin/rewards/{mug}/edit"
    form = {**COUPON_FORM, "name": "Mug", "kind": "product", "cost_points": "800"}
    form.update(stock="10", codes="MUG-1\nMUG-2", min_tier="", ends_at="")

    response = post(signed_in, path, form, path)

    assert response.status_code == 302, response.text
    with services(app) as session:
        reward = rewards.find_reward(session, mug)
    assert (reward.cost_points, reward.stock, reward.min_tier, reward.ends_at) == (
        800,
        10,
        None,
        None,
    )
    assert codes_left(app, mug) == 2
    assert ("ops-admin", "reward.update", str(mug)) in audited(app, "reward")
    assert audit_after(app, "reward.update")["stock"] == 10
    assert "2 unused codes in the pool." in signed_in.get(path).text


def test_unticking_active_deactivates_the_reward_as_the_api_does(app, signed_in, mug):
    path = f"/admin/rewards/{mug}/edit"
    form = {**COUPON_FORM, "name": "Mug", "kind": "product", "codes": ""}
    del form["active"]  # an unticked box is not sent

    response = post(signed_in, path, form, path)

    assert response.status_code == 302, response.text
    assert not reward_list(app)[0].active
    assert ("ops-admin", "reward.deactivate", str(mug)) in audited(app, "reward")


def test_a_refused_change_keeps_the_reward_and_what_was_typed(app, signed_in, mug):
    path = f"/admin/rewards/{mug}/edit"
    form = {**COUPON_FORM, "name": "Mug", "kind": "product", "stock": "-1"}

    response = post(signed_in, path, form, path)

    assert response.status_code == 422
    assert field_error(response, "stock") == "Number must be between 0 and 1000000000."
    assert 'value="-1"' in response.text
    assert reward_list(app)[0].stock is None
    assert [action for _, action, _ in audited(app, "reward")] == ["reward.create"]


def test_an_unknown_rewards_edit_page_is_the_consoles_404(signed_in):
    assert signed_in.get(f"/admin/rewards/{uuid.uuid4()}/edit").status_code == 404


# Webhooks

HOOK_FORM = {
    "url": "https://shop.example/hooks/loyalty",
    "event_types": ["tier.changed", "reward.redeemed"],
    "description": "The shop's CRM",
}


def endpoint_rows(app: Flask) -> list[WebhookEndpoint]:
    with services(app) as session:
        return list(session.scalars(sa.select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def test_an_admin_registers_a_webhook_and_sees_its_secret_once(app, signed_in):
    response = signed_in.post(
        "/admin/webhooks/new",
        data={**HOOK_FORM, "csrf_token": csrf_token(signed_in, "/admin/webhooks/new")},
    )

    assert response.status_code == 201, response.text
    [row] = endpoint_rows(app)
    assert (row.url, row.event_types, row.description) == (
        "https://shop.example/hooks/loyalty",
        ["reward.redeemed", "tier.changed"],
        "The shop's CRM",
    )
    assert f'<code id="secret">{row.secret}</code>' in response.text
    assert response.headers["Cache-Control"] == "no-store"
    assert ("ops-admin", "webhook.create", str(row.public_id)) in audited(app, "webhook")
    for page in ("/admin/webhooks", f"/admin/webhooks/{row.public_id}", "/admin/audit"):
        assert row.secret not in signed_in.get(page).text


def test_the_webhook_form_refuses_what_the_api_refuses(app, signed_in):
    response = signed_in.post(
        "/admin/webhooks/new",
        data={
            "url": "",
            "description": "x" * 501,
            "csrf_token": csrf_token(signed_in, "/admin/webhooks/new"),
        },
    )

    assert response.status_code == 422
    assert field_error(response, "url") == "Missing data for required field."
    assert field_error(response, "event_types") == (
        f"Length must be between 1 and {len(EVENT_TYPES) + 1}."
    )
    assert "Longer than maximum length 500." in field_error(response, "description")
    assert endpoint_rows(app) == []


def test_a_webhook_to_a_private_address_is_the_services_refusal(app, signed_in, monkeypatch):
    monkeypatch.setitem(app.config, "WEBHOOKS_ALLOW_LOCAL", False)
    data = {**HOOK_FORM, "url": "https://10.0.0.7/hooks"}

    response = signed_in.post(
        "/admin/webhooks/new",
        data={**data, "csrf_token": csrf_token(signed_in, "/admin/webhooks/new")},
    )

    assert response.status_code == 422
    assert field_error(response, "url") == "The URL must point to a public address."
    assert 'value="https://10.0.0.7/hooks"' in response.text
    assert re.search(
        r'<input checked id="event_types-\d+" [^>]*value="tier.changed">', response.text
    )
    assert endpoint_rows(app) == []


def test_an_admin_deletes_a_webhook_and_it_is_audited(app, signed_in):
    new = NewWebhook(url="https://shop.example/hooks", event_types=("*",))
    with services(app) as session:
        webhook_id = webhooks.create_endpoint(session, new, "seed").endpoint.public_id
    page = f"/admin/webhooks/{webhook_id}"

    response = post(signed_in, f"{page}/delete", {}, page)

    assert response.status_code == 302
    assert response.location == "/admin/webhooks"
    assert "https://shop.example/hooks" not in signed_in.get("/admin/webhooks").text
    assert ("ops-admin", "webhook.delete", str(webhook_id)) in audited(app, "webhook")
    assert signed_in.get(page).status_code == 404


def test_an_admin_redelivers_a_failed_delivery_and_it_is_audited(app, signed_in):
    new = NewWebhook(url="https://shop.example/hooks", event_types=("tier.changed",))
    with services(app) as session:
        webhook_id = webhooks.create_endpoint(session, new, "seed").endpoint.public_id
        outbox.emit(session, "tier.changed", {"member_id": "cust_1"})
        session.commit()
        assert dispatch(session) == 1
        session.execute(sa.update(WebhookDelivery).values(status=DeliveryStatus.FAILED))
        session.commit()
        delivery_id = session.scalars(sa.select(WebhookDelivery.public_id)).one()
    page = f"/admin/webhooks/{webhook_id}"
    assert "<td>failed</td>" in signed_in.get(page).text

    response = post(signed_in, f"{page}/deliveries/{delivery_id}/redeliver", {}, page)

    assert response.status_code == 302
    assert "<td>pending</td>" in signed_in.get(page).text
    assert ("ops-admin", "webhook.redeliver", str(webhook_id)) in audited(app, "webhook")


# Every write needs the form's CSRF token


@pytest.mark.parametrize(
    "path",
    ["/admin/tiers/new", "/admin/tiers/silver/delete", "/admin/rewards/new", "/admin/webhooks/new"],
)
def test_a_catalog_write_without_the_csrf_token_is_400(app, signed_in, path):
    response = signed_in.post(path, data={**GOLD_FORM, **HOOK_FORM})

    assert response.status_code == 400
    assert [t.code for t in tiers_now(app)] == ["silver"]
    assert endpoint_rows(app) == []
