"""The console's sessions, forms and headers, through the Flask test client.

Sessions live on the server: signing out, idling, the absolute lifetime and revoking the key
each end a session for every copy of its cookie. Forms refuse what the API refuses, every
write needs Flask-WTF's CSRF token, every console response carries the security headers,
and a NUL anywhere in a request is a 400 page. Time is the test's clock, never slept.

No app context stays pushed across the client's requests (the database is read through
``services``): Flask would reuse it for every request, and with it ``g``, where Flask-WTF
keeps the request's CSRF token and the console the signed-in caller.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from loyalty.auth import sessions
from loyalty.auth.models import ConsoleSession
from loyalty.auth.services import hash_key, revoke_key
from loyalty.automations import services as automations
from loyalty.db import utcnow
from loyalty.ledger.models import LedgerTransaction
from loyalty.ledger.policy import MAX_POINTS
from loyalty.membership import adjustments
from loyalty.membership.services import card
from loyalty.program.services import settings_view
from loyalty.rules import services as rules
from loyalty.schemas.automations import AutomationInSchema
from loyalty.schemas.orders import MAX_AMOUNT
from tests.console import csrf_token, sign_in
from tests.factories import (
    ApiKeyFactory,
    HoldFactory,
    MemberFactory,
    OrderFactory,
    RuleFactory,
    auth,
)
from tests.helpers import services

COOKIE = "loyalty_console"
MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)


class Clock:
    """The console sessions' clock: `now` is whatever the test says."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    moment = Clock(utcnow())
    monkeypatch.setattr(sessions, "utcnow", moment)
    return moment


@pytest.fixture
def admin(app: Flask) -> str:
    """The raw admin key of "ops-admin", and member cust_42 with 300 points to work on."""
    with services(app) as session:
        key: str = ApiKeyFactory(name="ops-admin", scopes=("admin",))
        MemberFactory(external_id="cust_42")
        adjustments.adjust(session, "cust_42", 300, "opening balance", "seed")
    return key


def sign_out(client: FlaskClient) -> None:
    token = csrf_token(client, "/admin/")
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 302


def signed_in(response: TestResponse) -> bool:
    """Whether the console answered as to a signed-in admin (not a bounce to sign in)."""
    if response.status_code == 302 and "/admin/login" in response.location:
        return False
    assert response.status_code == 200, response.status_code
    return True


def holding(app: Flask, cookie: str) -> FlaskClient:
    """Another browser, holding a copy of a console cookie (it keeps sending it whatever the
    server answers)."""
    other = app.test_client()
    other.set_cookie(COOKIE, cookie, path="/admin")
    return other


def adjust(client: FlaskClient, points: object, reason: str = "goodwill") -> TestResponse:
    token = csrf_token(client, "/admin/members/cust_42")
    return client.post(
        "/admin/members/cust_42/adjust",
        data={"points": str(points), "reason": reason, "csrf_token": token},
        follow_redirects=True,
    )


def available(app: Flask) -> int:
    with services(app) as session:
        return card(session, "cust_42").available


def stored_sessions(app: Flask) -> list[ConsoleSession]:
    with services(app) as session:
        return list(session.scalars(sa.select(ConsoleSession)))


# Sessions


def test_a_cookie_copied_before_signing_out_neither_reads_nor_writes_after(app, client, admin):
    sign_in(client, admin)
    stolen = client.get_cookie(COOKIE, path="/admin").value
    assert signed_in(holding(app, stolen).get("/admin/members/cust_42"))
    stolen_token = csrf_token(holding(app, stolen), "/admin/members/cust_42")

    sign_out(client)

    assert not signed_in(holding(app, stolen).get("/admin/members/cust_42"))
    forged = holding(app, stolen).post(
        "/admin/members/cust_42/adjust",
        data={"points": "1000", "reason": "after logout", "csrf_token": stolen_token},
    )
    assert not signed_in(forged)
    assert available(app) == 300


def test_signing_out_deletes_the_session_on_the_server(app, client, admin):
    sign_in(client, admin)
    assert len(stored_sessions(app)) == 1

    sign_out(client)

    assert stored_sessions(app) == []


def test_the_server_keeps_only_a_hash_of_the_session_token(app, client, admin):
    sign_in(client, admin)
    cookie = client.get_cookie(COOKIE, path="/admin")
    token = app.session_interface.get_signing_serializer(app).loads(cookie.value)[  # type: ignore[attr-defined]
        "session_token"
    ]

    stored = [row.token_hash for row in stored_sessions(app)]

    assert stored == [hash_key(token)]
    assert token not in stored


def test_a_session_idle_longer_than_the_idle_timeout_ends(app, client, admin, clock):
    sign_in(client, admin)
    clock.now += 29 * MINUTE
    assert signed_in(client.get("/admin/"))
    clock.now += 29 * MINUTE  # idle 29 minutes again: each request keeps it alive
    assert signed_in(client.get("/admin/"))

    clock.now += 30 * MINUTE

    assert not signed_in(client.get("/admin/"))


def test_the_idle_timeout_is_a_setting(app, client, admin, clock, monkeypatch):
    monkeypatch.setitem(app.config, "CONSOLE_IDLE_MINUTES", 5)
    sign_in(client, admin)
    clock.now += 4 * MINUTE
    assert signed_in(client.get("/admin/"))

    clock.now += 6 * MINUTE

    assert not signed_in(client.get("/admin/"))


def test_a_busy_session_still_ends_at_the_absolute_timeout(app, client, admin, clock):
    sign_in(client, admin)
    for _ in range(23):  # a page every 20 minutes for 7 hours 40 minutes
        clock.now += 20 * MINUTE
        assert signed_in(client.get("/admin/"))
    clock.now += 19 * MINUTE
    assert signed_in(client.get("/admin/"))

    clock.now += MINUTE  # 8 hours after signing in

    assert not signed_in(client.get("/admin/"))


def test_the_settings_come_from_the_environment(monkeypatch):
    from loyalty import config

    monkeypatch.setenv("LOYALTY_CONSOLE_IDLE_MINUTES", "15")
    monkeypatch.setenv("LOYALTY_CONSOLE_MAX_HOURS", "2")
    settings = config.from_environment()
    assert (settings["CONSOLE_IDLE_MINUTES"], settings["CONSOLE_MAX_HOURS"]) == (15, 2)

    monkeypatch.setenv("LOYALTY_CONSOLE_IDLE_MINUTES", "0")
    with pytest.raises(ValueError, match="LOYALTY_CONSOLE_IDLE_MINUTES"):
        config.from_environment()


def test_a_request_within_a_minute_of_the_last_does_not_write_the_session(
    app, client, admin, clock
):
    sign_in(client, admin)
    signed_in_at = clock.now
    clock.now += 30 * dt.timedelta(seconds=1)
    assert signed_in(client.get("/admin/"))
    assert [row.last_seen_at for row in stored_sessions(app)] == [signed_in_at]

    clock.now += MINUTE
    assert signed_in(client.get("/admin/"))
    assert [row.last_seen_at for row in stored_sessions(app)] == [clock.now]


def test_revoking_the_key_ends_its_sessions(app, client, admin):
    sign_in(client, admin)
    assert signed_in(client.get("/admin/"))

    with services(app) as session:
        revoke_key(session, "ops-admin")

    assert not signed_in(client.get("/admin/"))
    assert stored_sessions(app) == []


def test_signing_in_again_starts_a_new_session_and_ends_the_old(app, client, admin):
    sign_in(client, admin)
    earlier = client.get_cookie(COOKIE, path="/admin").value

    sign_in(client, admin)

    assert not signed_in(holding(app, earlier).get("/admin/"))
    assert signed_in(client.get("/admin/"))


# Forms refuse what the API refuses


def test_the_adjust_form_refuses_more_points_than_the_api_allows(app, client, admin):
    sign_in(client, admin)

    page = adjust(client, MAX_POINTS + 1)

    assert "Number must be between -1000000000 and 1000000000." in page.text
    assert available(app) == 300
    with services(app) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(LedgerTransaction)) == 1


@pytest.mark.parametrize(
    ("points", "reason", "message"),
    [
        (-MAX_POINTS - 1, "too many", "Number must be between"),
        (0, "nothing", "Must not be zero."),
        ("12abc", "typo", "Not a valid integer value."),
        ("9" * 5000, "too long to read", "Not a valid integer value."),
        (10, "", "Missing data for required field."),
        (10, "   ", "Field must be between 1 and 500 characters long."),
        (10, "x" * 501, "Field must be between 1 and 500 characters long."),
    ],
)
def test_the_adjust_form_refuses_what_the_api_refuses(app, client, admin, points, reason, message):
    sign_in(client, admin)

    page = adjust(client, points, reason)

    assert message in page.text
    assert available(app) == 300


def test_the_adjust_form_takes_the_api_bound_itself(app, client, admin):
    sign_in(client, admin)

    page = adjust(client, MAX_POINTS, "the most one adjustment may add")

    assert "Adjusted by +1000000000 points." in page.text
    assert available(app) == 300 + MAX_POINTS


def test_the_status_form_refuses_a_status_the_api_does_not_know(app, client, admin):
    sign_in(client, admin)
    token = csrf_token(client, "/admin/members/cust_42")

    page = client.post(
        "/admin/members/cust_42/status",
        data={"status": "deleted", "csrf_token": token},
        follow_redirects=True,
    )

    assert "Not a valid choice." in page.text
    with services(app) as session:
        assert card(session, "cust_42").status == "active"


def test_the_program_form_refuses_a_setting_past_the_api_bound(app, client, admin):
    sign_in(client, admin)
    with services(app) as session:
        before = settings_view(session)
    token = csrf_token(client, "/admin/program")

    response = client.post(
        "/admin/program",
        data={
            "csrf_token": token,
            "currency": "USD",
            "point_value_points": str(MAX_POINTS + 1),
            "point_value_amount": "100",
            "pending_days": "366",
            "expiry_policy": "never",
            "expiry_months": "",
            "hold_ttl_seconds": "900",
            "max_redemption_percent": "50",
            "min_redemption_points": "0",
            "tier_window_months": "12",
        },
    )

    assert response.status_code == 422
    assert 'id="pending_days-error"' in response.text
    assert 'id="point_value_points-error"' in response.text
    with services(app) as session:
        assert settings_view(session) == before


def test_the_rule_form_refuses_a_priority_past_the_api_bound(app, client, admin):
    sign_in(client, admin)
    token = csrf_token(client, "/admin/rules/new")

    response = client.post(
        "/admin/rules/new",
        data={
            "csrf_token": token,
            "kind": "spend",
            "name": "Too eager",
            "priority": "10001",
            "points": "1",
            "per_amount": "100",
            "active": "y",
        },
    )

    assert response.status_code == 422
    assert "Number must be between 0 and 10000." in response.text
    with services(app) as session:
        assert rules.list_rules(session, active=None, kind=None, limit=10, after=None)[0] == []


def test_the_simulator_refuses_a_cart_line_past_the_api_bound(app, client, admin):
    sign_in(client, admin)
    token = csrf_token(client, "/admin/rules/simulate")

    response = client.post(
        "/admin/rules/simulate",
        data={"csrf_token": token, "cart": f"tee, apparel, 1, {MAX_AMOUNT + 1}", "draft_name": ""},
    )

    assert response.status_code == 422
    assert "Line 1: unit_price:" in response.text


def test_the_simulator_needs_no_draft_rule(app, client, admin):
    sign_in(client, admin)
    token = csrf_token(client, "/admin/rules/simulate")

    response = client.post(
        "/admin/rules/simulate",
        data={"csrf_token": token, "cart": "tee, apparel, 1, 2500", "draft_kind": "spend"},
    )

    assert response.status_code == 200
    assert 'id="result"' in response.text


# CSRF


@pytest.mark.parametrize("sent", [None, "", "not-the-token"])
def test_a_console_write_without_the_right_csrf_token_is_400(app, client, admin, sent):
    sign_in(client, admin)
    data = {"points": "5", "reason": "forged"}
    if sent is not None:
        data["csrf_token"] = sent

    response = client.post("/admin/members/cust_42/adjust", data=data)

    assert response.status_code == 400
    assert "security token" in response.text
    assert available(app) == 300


def test_a_token_of_another_session_is_refused(app, client, admin):
    sign_in(client, admin)
    other = app.test_client()
    sign_in(other, admin)
    others_token = csrf_token(other, "/admin/members/cust_42")

    response = client.post(
        "/admin/members/cust_42/adjust",
        data={"points": "5", "reason": "forged", "csrf_token": others_token},
    )

    assert response.status_code == 400
    assert available(app) == 300


def test_signing_in_needs_the_csrf_token_too(app, client, admin):
    client.get("/admin/login")

    response = client.post("/admin/login", data={"api_key": admin})

    assert response.status_code == 400
    assert stored_sessions(app) == []


def test_the_json_api_needs_no_csrf_token(app, client, admin):
    response = client.post("/v1/members", json={"external_id": "cust_43"}, headers=auth(admin))

    assert response.status_code == 201


# Headers


def assert_console_headers(response: TestResponse) -> None:
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy


def assert_no_inline_code(text: str) -> None:
    """The policy allows no inline script or style: a page needs none, and loads no script
    but the console's own files."""
    tags = re.findall(r"<script[^>]*>", text, re.IGNORECASE)
    scripts = re.findall(r'<script src="/admin/static/[\w-]+\.js" defer></script>', text)
    assert len(tags) == len(scripts), tags
    assert "style=" not in text


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/admin/login", 200),
        ("/admin/", 302),  # signed out: to the sign-in page
        ("/admin/members.csv", 302),
        ("/admin/insight", 302),
        ("/admin/automations", 302),
        ("/admin/automations/00000000-0000-4000-8000-000000000000", 302),
        ("/admin/static/console.css", 200),
        ("/admin/no-such-page", 404),
    ],
)
def test_every_console_response_signed_out_carries_the_security_headers(app, client, path, status):
    with client.get(path) as response:
        assert response.status_code == status
        assert_console_headers(response)


@pytest.mark.parametrize(
    "path",
    [
        "/admin/",
        "/admin/members?q=cust",
        "/admin/members?segment=champions&recency_score=5&predicted_value_min=1.5",
        "/admin/members?recency_score=9",  # refused filters: the page, with its errors
        "/admin/members.csv?segment=champions",
        "/admin/members/cust_42",
        "/admin/members/nobody",  # the console's 404 page
        "/admin/insight",
        "/admin/insight?split=2026-01-01",
        "/admin/rules",
        "/admin/rules/new",
        "/admin/rules/simulate",
        "/admin/automations",
        "/admin/automations/00000000-0000-4000-8000-000000000000",  # the console's 404 page
        "/admin/automations/new",
        "/admin/automations/00000000-0000-4000-8000-000000000000/edit",  # 404
        "/admin/tiers",
        "/admin/tiers/new",
        "/admin/tiers/nobody/edit",  # the console's 404 page
        "/admin/rewards",
        "/admin/rewards/new",
        "/admin/rewards/00000000-0000-4000-8000-000000000000/edit",  # 404
        "/admin/program",
        "/admin/webhooks",
        "/admin/webhooks/new",
        "/admin/audit",
    ],
)
def test_every_signed_in_page_carries_the_headers_and_is_never_cached(app, client, admin, path):
    sign_in(client, admin)

    response = client.get(path)

    assert response.status_code in (200, 404, 422)
    assert_console_headers(response)
    assert response.headers["Cache-Control"] == "no-store"
    assert_no_inline_code(response.text)


@pytest.fixture
def welcome(app: Flask, admin: str) -> str:
    """The public id of an active automation welcoming new members."""
    body = {"name": "Welcome", "trigger": {"kind": "enrolled", "delay_days": 0}}
    with services(app) as session:
        definition = AutomationInSchema().load({**body, "actions": [{"type": "webhook"}]})
        return str(automations.create_automation(session, definition, "seed").public_id)


@pytest.mark.parametrize(
    "suffix",
    [
        "",
        "/edit",  # the form for its next version
        "?member_id=cust_42",  # the simulator's answer
        "?member_id=nobody",  # no such member: said by the form
        "?member_id=",  # refused: the page, with its errors
        "?cursor=not-a-cursor",  # the console's 422 page
    ],
)
def test_an_automation_page_carries_the_headers_and_needs_no_inline_code(
    app, client, admin, welcome, suffix
):
    sign_in(client, admin)

    response = client.get(f"/admin/automations/{welcome}{suffix}")

    assert response.status_code in (200, 422)
    assert_console_headers(response)
    assert response.headers["Cache-Control"] == "no-store"
    assert_no_inline_code(response.text)


def test_deactivating_an_automation_needs_the_csrf_token(app, client, admin, welcome):
    sign_in(client, admin)
    path = f"/admin/automations/{welcome}/deactivate"

    assert client.post(path).status_code == 400
    with services(app) as session:
        assert automations.get_automation(session, uuid.UUID(welcome)).active

    token = csrf_token(client, f"/admin/automations/{welcome}")
    assert client.post(path, data={"csrf_token": token}).status_code == 302
    with services(app) as session:
        assert not automations.get_automation(session, uuid.UUID(welcome)).active


def test_the_stylesheet_may_be_cached(app, client):
    with client.get("/admin/static/console.css") as response:
        assert "no-store" not in response.headers.get("Cache-Control", "")
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_json_api_is_left_as_it_was(app, client):
    response = client.get("/healthz")

    assert "Content-Security-Policy" not in response.headers


# NUL


@pytest.mark.parametrize(
    "path",
    [
        "/admin/members?q=cust%00_42",
        "/admin/members?q%00=cust",
        "/admin/members/cust%00_42",
        "/admin/audit?target_type=member&target_id=cust%00_42",
    ],
)
def test_a_nul_in_a_console_query_or_path_is_a_400_page(app, client, admin, path):
    sign_in(client, admin)

    response = client.get(path)

    assert response.status_code == 400
    assert "NUL" in response.text
    assert_console_headers(response)


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/admin/members/cust_42/adjust", {"points": "5", "reason": "bad\x00reason"}),
        ("/admin/members/cust_42/adjust", {"points": "5", "reason": "ok", "x\x00": "1"}),
        ("/admin/members/cust_42/status", {"status": "active\x00"}),
        ("/admin/rules/new", {"kind": "spend", "name": "n\x00", "points": "1"}),
        ("/admin/rules/simulate", {"cart": "tee, apparel, 1, 100", "member_id": "c\x001"}),
        ("/admin/program", {"currency": "US\x00"}),
        ("/admin/automations/new", {"name": "n\x00", "kind": "birthday", "webhook": "y"}),
    ],
)
def test_a_nul_in_a_console_form_is_a_400_page(app, client, admin, path, data):
    sign_in(client, admin)
    token = csrf_token(client, "/admin/members/cust_42")

    response = client.post(path, data={**data, "csrf_token": token})

    assert response.status_code == 400
    assert "NUL" in response.text
    assert available(app) == 300


def test_a_nul_in_the_sign_in_form_is_a_400_page(app, client):
    token = csrf_token(client, "/admin/login")

    response = client.post("/admin/login", data={"api_key": "lk_\x00", "csrf_token": token})

    assert response.status_code == 400


def test_a_members_page_shows_the_order_each_redemption_paid_for(app, client, admin):
    with services(app) as session:
        RuleFactory()
        held = HoldFactory(member_id="cust_42", points=100)
        OrderFactory(order_id="o-7", member_id="cust_42", redemption_id=str(held.public_id))
        session.commit()
    sign_in(client, admin)

    page = client.get("/admin/members/cust_42")

    holds = page.text.split("<h2>Holds</h2>")[1].split("</section>")[0]
    assert "<td>captured</td><td>o-7</td>" in holds
