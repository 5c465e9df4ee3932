"""Service endpoints: liveness and readiness, outside /v1 and without a key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from flask import Flask

from loyalty import config
from loyalty.extensions import db
from loyalty.migrate import alembic_config, upgrade
from tests.helpers import app_built

PROBLEM_JSON = "application/problem+json"


def revisions() -> list[str]:
    """Every migration, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


@pytest.fixture
def app_on() -> Iterator[Callable[[str], Flask]]:
    """Fresh apps from the factory on a database URL of the test's choosing."""
    with ExitStack() as built:
        yield lambda raw_url: built.enter_context(app_built(config.database_url(raw_url)))


def problem(response: Any) -> dict[str, Any]:
    assert response.status_code == 503
    assert response.mimetype == PROBLEM_JSON
    body: dict[str, Any] = response.json
    assert body["code"] == "service_unavailable"
    assert body["status"] == 503
    return body


def test_healthz_answers_200_without_a_key(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json == {"status": "ok"}


@pytest.mark.committed  # /readyz opens a connection of its own
def test_readyz_answers_200_on_a_migrated_database(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json == {"status": "ready"}


def test_readyz_answers_503_when_the_database_is_unreachable(app_on):
    down = app_on("postgresql://postgres@127.0.0.1:1/loyalty")  # nothing listens on port 1

    body = problem(down.test_client().get("/readyz"))

    assert "unreachable" in body["detail"]


def test_healthz_stays_200_when_the_database_is_unreachable(app_on):
    down = app_on("postgresql://postgres@127.0.0.1:1/loyalty")

    assert down.test_client().get("/healthz").status_code == 200


def test_readyz_answers_503_listing_every_migration_of_a_new_database(app_on, tmp_path: Path):
    empty = app_on(f"sqlite:///{tmp_path / 'never-migrated.db'}")

    body = problem(empty.test_client().get("/readyz"))

    for revision in revisions():
        assert revision in body["detail"]


def test_readyz_lists_only_the_migrations_a_database_lacks(app_on, tmp_path: Path):
    first, *later = revisions()
    if not later:
        pytest.skip("only one migration exists")
    behind = app_on(f"sqlite:///{tmp_path / 'behind.db'}")
    with behind.app_context():
        upgrade(db.engine, first)

    body = problem(behind.test_client().get("/readyz"))

    listed = body["detail"].split(": ", 1)[1].rstrip(".").split(", ")
    assert sorted(listed) == sorted(later)


def test_readyz_answers_200_once_the_database_is_migrated(app_on, tmp_path: Path):
    fresh = app_on(f"sqlite:///{tmp_path / 'migrated-now.db'}")
    with fresh.app_context():
        upgrade(db.engine)

    assert fresh.test_client().get("/readyz").status_code == 200
