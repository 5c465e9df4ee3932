"""Settings read from the environment: the database behind PgBouncer, the webhook lease."""

from __future__ import annotations

import pytest

from loyalty import config

URL = "postgresql+psycopg://loyalty@127.0.0.1:6432/loyalty"


def test_a_direct_connection_asks_for_utc_at_startup_and_may_prepare(monkeypatch):
    monkeypatch.delenv("LOYALTY_DB_PGBOUNCER", raising=False)

    connect_args = config.engine_options(URL)["connect_args"]

    assert connect_args == {"connect_timeout": 5, "options": "-c timezone=UTC"}


def test_behind_pgbouncer_nothing_is_prepared_and_no_startup_option_is_sent(monkeypatch):
    monkeypatch.setenv("LOYALTY_DB_PGBOUNCER", "1")

    connect_args = config.engine_options(URL)["connect_args"]

    assert connect_args == {"connect_timeout": 5, "prepare_threshold": None}


def test_the_webhook_lease_is_a_minute_unless_set(monkeypatch):
    monkeypatch.delenv("LOYALTY_WEBHOOK_LEASE_SECONDS", raising=False)
    assert config.webhook_lease_seconds() == 60
    monkeypatch.setenv("LOYALTY_WEBHOOK_LEASE_SECONDS", "12")
    assert config.webhook_lease_seconds() == 12


@pytest.mark.parametrize("raw", ["10", "0", "-5"])
def test_a_webhook_lease_within_a_deliverys_timeout_is_refused(monkeypatch, raw):
    monkeypatch.setenv("LOYALTY_WEBHOOK_LEASE_SECONDS", raw)

    with pytest.raises(ValueError, match="LOYALTY_WEBHOOK_LEASE_SECONDS"):
        config.webhook_lease_seconds()
