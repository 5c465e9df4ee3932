"""The console's bulk grants: create one from pasted ids or a segment (refused as the API
refuses, next to the field), list them, and watch one's progress and report."""

from __future__ import annotations

import html
import uuid

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from loyalty.audit.models import AuditEntry
from loyalty.grants import services as grants
from loyalty.members.segments import SavedSegment
from tests.console import csrf_token, sign_in
from tests.factories import ApiKeyFactory, MemberFactory
from tests.helpers import services

PAGE = "/admin/bulk-grants"


@pytest.fixture
def console(app: Flask, client: FlaskClient) -> FlaskClient:
    """A client signed in as "ops-admin", with members c1 and c2."""
    with services(app):
        key: str = ApiKeyFactory(name="ops-admin", scopes=("admin",))
        for external_id in ("c1", "c2"):
            MemberFactory(external_id=external_id)
    sign_in(client, key)
    return client


def submit(client: FlaskClient, **fields: str) -> TestResponse:
    return client.post(PAGE, data={**fields, "csrf_token": csrf_token(client, PAGE)})


def field_error(response: TestResponse, name: str) -> str:
    marker = f'<p class="error" id="{name}-error">'
    if marker not in response.text:
        return ""
    return html.unescape(response.text.split(marker, 1)[1].split("</p>", 1)[0])


def test_pasted_ids_queue_a_grant_by_the_signed_in_admin_and_its_page_shows_it(app, console):
    response = submit(console, reason="Sorry", member_ids="c1\nc2\nghost\n", points="50")

    assert response.status_code == 302, response.text
    job_id = uuid.UUID(response.location.rsplit("/", 1)[1])
    page = console.get(response.location)
    assert page.status_code == 200
    assert '<span class="value" id="progress">0 / 3</span>' in page.text
    assert 'http-equiv="refresh"' in page.text
    with services(app) as session:
        assert grants.get_job(session, job_id).actor == "ops-admin"
        assert (
            session.scalar(
                sa.select(AuditEntry.actor).where(AuditEntry.action == "bulk_grant.create")
            )
            == "ops-admin"
        )
        grants.run_due(session)

    done = console.get(response.location)
    assert '<span class="value" id="state">done</span>' in done.text
    assert "unknown member" in done.text
    assert 'http-equiv="refresh"' not in done.text
    assert "Sorry" in console.get(PAGE).text


def test_a_segment_can_be_picked(app, console):
    with services(app) as session:
        session.add(SavedSegment(key="vips", name="VIPs", filter={"tiers": ["gold"]}))
        session.commit()

    assert '<option value="vips">VIPs</option>' in console.get(PAGE).text
    response = submit(console, reason="VIP week", segment="vips", benefit_code="lounge")

    assert response.status_code == 302


def test_a_bad_form_is_refused_next_to_its_field_as_the_api_refuses_it(console):
    response = submit(console, reason="Sorry", member_ids="c1\nnot an id", points="50")

    assert response.status_code == 422
    assert field_error(response, "member_ids") == "Line 2: 'not an id' is not an external id."
    nothing = submit(console, reason="Sorry", points="50")
    assert nothing.status_code == 422
    assert "Name exactly one of member_ids, csv and segment." in nothing.text
