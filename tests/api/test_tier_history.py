"""The tier history an admin reads.

The tiers' program, its defaults and how time is moved: see tests/api/tier_calls.py. After
every test the whole ledger must verify.
"""

from __future__ import annotations

import datetime as dt

import pytest

from tests.api.tier_calls import (
    SECOND,
    card,
    card_at,
    history,
    order,
    refund,
)
from tests.helpers import problem, when

# After every test the whole ledger must verify.
pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")


def test_tier_history_lists_every_change_newest_first(
    app, client, admin, checkout, program, member
):
    order(client, checkout, "o1", 150)
    order(client, checkout, "o2", 500)
    refund(client, checkout, "o2", refund_id="r1", amount=50000)
    retained_until = when(card(client, checkout)["tier_progress"]["retained_until"])
    card_at(app, retained_until + SECOND)

    items = history(client, admin)

    assert [(c["from_tier"], c["to_tier"], c["reason"], c["qualifying_points"]) for c in items] == [
        ("gold", "silver", "retention_expired", 150),
        ("silver", "gold", "qualified", 650),
        (None, "silver", "qualified", 150),
    ]
    assert set(items[0]) == {"from_tier", "to_tier", "reason", "qualifying_points", "changed_at"}
    stamps = [when(c["changed_at"]) for c in items]
    assert all(stamp.utcoffset() == dt.timedelta(0) for stamp in stamps)
    assert stamps == sorted(stamps, reverse=True)


def test_tier_history_of_a_member_who_never_changed_tier_is_empty(client, admin, member):
    assert history(client, admin) == []


def test_tier_history_of_an_unknown_member_is_404(client, admin):
    response = client.get("/v1/admin/members/nobody/tier-history", headers=admin)

    problem(response, 404, "not_found")


def test_tier_history_is_for_admins_only(client, checkout, app_key, member):
    for headers in (checkout, app_key):
        response = client.get("/v1/admin/members/c1/tier-history", headers=headers)
        assert response.status_code == 403
