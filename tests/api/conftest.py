from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from loyalty.logs import JsonFormatter
from tests.api.checkout_calls import add_rule, give
from tests.factories import ApiKeyFactory, RuleFactory, TierFactory, auth
from tests.helpers import created


@pytest.fixture
def headers_for(app: Flask) -> Callable[..., dict[str, str]]:
    """headers_for("checkout") -> Authorization headers of a fresh key with that scope.

    No app context stays pushed, so each test request gets its own, as in production.
    """

    def make(*scopes: str, **extra: str) -> dict[str, str]:
        with app.app_context():
            return auth(ApiKeyFactory(scopes=scopes or ("admin",)), **extra)

    return make


@pytest.fixture
def admin(headers_for: Callable[..., dict[str, str]]) -> dict[str, str]:
    return headers_for("admin")


@pytest.fixture
def checkout(headers_for: Callable[..., dict[str, str]]) -> dict[str, str]:
    return headers_for("checkout")


@pytest.fixture
def app_key(headers_for: Callable[..., dict[str, str]]) -> dict[str, str]:
    return headers_for("app")


@pytest.fixture
def member(client: FlaskClient, checkout: dict[str, str]) -> str:
    """Member c1, enrolled by the checkout."""
    created(client.post("/v1/members", json={"external_id": "c1"}, headers=checkout))
    return "c1"


@pytest.fixture
def rule(client: FlaskClient, admin: dict[str, str]) -> dict[str, Any]:
    """The program's base rule: 1 point per 1.00 spent."""
    return add_rule(client, admin, RuleFactory.build())


@pytest.fixture
def funded(client: FlaskClient, admin: dict[str, str], member: str) -> str:
    """c1 with 1000 available points."""
    give(client, admin, member, 1000)
    return member


@pytest.fixture
def spend_rule(client: FlaskClient, admin: dict[str, str]) -> dict[str, Any]:
    return add_rule(client, admin, RuleFactory.build())


@pytest.fixture
def program(client: FlaskClient, admin: dict[str, str], spend_rule: dict[str, Any]) -> None:
    """The spend rule and the three tiers (Silver, Gold, Platinum: see TierFactory)."""
    for trait in ("silver", "gold", "platinum"):
        created(
            client.post("/v1/admin/tiers", json=TierFactory.build(**{trait: True}), headers=admin)
        )


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What the request logger writes, through the JSON formatter, one line per record."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("loyalty.request")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)
