"""Helpers the test files share: reading API answers, building apps, checking the ledger."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from loyalty import config, create_app
from loyalty.extensions import db
from loyalty.ledger import postings
from loyalty.ledger import verify as ledger_verify
from loyalty.ledger.models import Account, PointLot, TransactionKind
from loyalty.program.services import get_settings
from loyalty.settlement import services as settlement
from tests.factories import OrderFactory


def created(response: TestResponse) -> dict[str, Any]:
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def ok(response: TestResponse) -> dict[str, Any]:
    assert response.status_code == 200, response.json
    return response.json  # type: ignore[no-any-return]


def problem(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.json
    assert response.content_type == "application/problem+json"
    assert response.json["code"] == code
    return response.json  # type: ignore[no-any-return]


def when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def iso(moment: dt.datetime) -> str:
    return moment.isoformat()


def build_app(url: str, **overrides: Any) -> Flask:
    """An app from the factory on the database at `url`, configured as the suite's, with any
    `overrides` of that configuration."""
    return create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": url,
            "SQLALCHEMY_ENGINE_OPTIONS": config.engine_options(url),
            # The suite's webhook receivers listen on 127.0.0.1; the production default
            # (public https targets only) is tested in tests/api/test_webhook_targets.py.
            "WEBHOOKS_ALLOW_LOCAL": True,
            # The limiter runs (in memory) but never binds: the suite sends thousands of
            # requests on a few keys and many 401s from one address. Rate limits are tested
            # with their own limits (tests/api/test_rate_limits.py).
            "RATE_LIMITS": dict.fromkeys(config.RATE_LIMIT_DEFAULTS, "1000000/minute"),
            **overrides,
        }
    )


@contextmanager
def app_built(url: str, **overrides: Any) -> Iterator[Flask]:
    """``build_app``, its connections closed at the end."""
    built = build_app(url, **overrides)
    try:
        yield built
    finally:
        with built.app_context():
            db.engine.dispose()


@contextmanager
def services(app: Flask) -> Iterator[Session]:
    """A session of its own for calling services directly (as a job or a later request)."""
    with app.app_context():
        yield db.session


def assert_ledger_verifies(app: Flask) -> None:
    with app.app_context():
        report = ledger_verify.verify(db.session)
        assert report.ok, report.problems


def credit_earned(
    session: Session,
    member_id: int,
    points: int,
    now: dt.datetime,
    *,
    pending: bool = True,
    settle: bool = False,
    **txn_fields: Any,
) -> PointLot:
    """Earn `points` straight through the ledger, as an order would (pending for the return
    window unless `pending=False`), on the member's locked balance, settled first with
    `settle`. Call it inside the caller's ``transaction(session)``."""
    settings = get_settings(session)
    balance = postings.lock_balance(session, member_id)
    if settle:
        settlement.settle_member(session, balance, now)
    _, lot = postings.credit(
        session,
        balance,
        settings,
        points,
        kind=TransactionKind.EARN,
        source=Account.ISSUED,
        now=now,
        pending=pending,
        **txn_fields,
    )
    return lot


def order_placed_at(
    app: Flask, order_id: str, external_id: str, dollars: int, now: dt.datetime, **fields: Any
) -> None:
    """An order of one tee worth `dollars`, placed through the service at `now`."""
    with app.app_context():
        OrderFactory(
            order_id=order_id,
            member_id=external_id,
            worth=dollars,
            uncategorised=True,
            now=now,
            **fields,
        )


def free_port() -> int:
    """A local port nothing listens on (now: a test's server may take it next)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
