from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from tests.factories import ApiKeyFactory, auth


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
