"""Which server a read that may lag goes to (loyalty.replica), with a fake probe and clock;
and the replica's settings (loyalty.config). No database: the router's engine is never
connected to here."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from loyalty import config
from loyalty.replica import (
    DOWN_RETRY_SECONDS,
    PROBE_INTERVAL_SECONDS,
    Fallback,
    ReplicaHealth,
    ReplicaRouter,
    Target,
    health_of,
    parse_lsn,
)

REPLICA = (Target.REPLICA, None)
HEALTHY = ReplicaHealth(0.0, 100)


@dataclass
class FakeReplica:
    health: ReplicaHealth | None = HEALTHY
    now: float = 0.0
    probes: list[float] = field(default_factory=list)

    def probe(self) -> ReplicaHealth | None:
        self.probes.append(self.now)
        return self.health


@pytest.fixture
def fake() -> FakeReplica:
    return FakeReplica()


@pytest.fixture
def router(fake: FakeReplica) -> Iterator[ReplicaRouter]:
    engine = sa.create_engine("sqlite://")
    yield ReplicaRouter(engine, fake.probe, max_lag_seconds=5.0, clock=lambda: fake.now)
    engine.dispose()


def test_a_wal_position_reads_as_one_number() -> None:
    assert parse_lsn("0/0") == 0
    assert parse_lsn("16/B374D848") == (0x16 << 32) + 0xB374D848
    assert parse_lsn("1/0") > parse_lsn("0/FFFFFFFF")


def test_a_replica_that_replayed_what_the_primary_had_is_not_lagging_however_old_its_replay() -> (
    None
):
    # An idle primary: the latest replayed transaction is an hour old, and nothing is missing.
    assert health_of(500, True, 500, 3600.0) == ReplicaHealth(0.0, 500)


def test_a_replica_behind_the_primary_lags_by_the_age_of_its_latest_replay() -> None:
    assert health_of(500, True, 400, 7.5) == ReplicaHealth(7.5, 400)
    assert health_of(500, True, 400, None) == ReplicaHealth(math.inf, 400)
    assert health_of(500, True, 400, -0.01) == ReplicaHealth(0.0, 400)  # clocks a hair apart


def test_a_server_not_in_recovery_is_never_behind() -> None:
    assert health_of(500, False, 480, None) == ReplicaHealth(0.0, 480)


def test_reads_go_to_a_healthy_replica_and_it_is_probed_once_a_second(
    router: ReplicaRouter, fake: FakeReplica
) -> None:
    assert router.choose() == REPLICA
    fake.now = PROBE_INTERVAL_SECONDS - 0.01
    assert router.choose() == REPLICA
    fake.now = PROBE_INTERVAL_SECONDS
    assert router.choose() == REPLICA

    assert fake.probes == [0.0, PROBE_INTERVAL_SECONDS]


def test_a_replica_lagging_more_than_allowed_is_not_read(
    router: ReplicaRouter, fake: FakeReplica
) -> None:
    fake.health = ReplicaHealth(5.0, 100)
    assert router.choose() == REPLICA  # exactly the allowed lag
    fake.health, fake.now = ReplicaHealth(5.01, 100), PROBE_INTERVAL_SECONDS
    assert router.choose() == (Target.PRIMARY, Fallback.LAGGING)


def test_a_replica_that_is_down_is_probed_again_after_a_few_seconds(
    router: ReplicaRouter, fake: FakeReplica
) -> None:
    fake.health = None
    assert router.choose() == (Target.PRIMARY, Fallback.DOWN)
    fake.health, fake.now = ReplicaHealth(0.0, 100), DOWN_RETRY_SECONDS - 0.01
    assert router.choose() == (Target.PRIMARY, Fallback.DOWN)
    fake.now = DOWN_RETRY_SECONDS
    assert router.choose() == REPLICA

    assert fake.probes == [0.0, DOWN_RETRY_SECONDS]


def test_a_replica_that_failed_a_request_is_down_until_probed_again(
    router: ReplicaRouter, fake: FakeReplica
) -> None:
    assert router.choose() == REPLICA
    router.mark_down()
    assert router.choose() == (Target.PRIMARY, Fallback.DOWN)
    fake.now = DOWN_RETRY_SECONDS
    assert router.choose() == REPLICA


def test_a_callers_write_is_read_from_the_replica_once_replayed_there(
    router: ReplicaRouter, fake: FakeReplica
) -> None:
    assert router.choose(written=100) == REPLICA
    assert fake.probes == [0.0]  # replayed as of the cached probe: no new one
    assert router.choose(written=101) == (Target.PRIMARY, Fallback.READ_YOUR_WRITES)
    fake.health = ReplicaHealth(0.0, 101)
    assert router.choose(written=101) == REPLICA  # probed afresh, not a second later

    assert fake.probes == [0.0, 0.0, 0.0]


def test_a_replica_found_down_while_checking_a_write_is_down(
    router: ReplicaRouter, fake: FakeReplica
) -> None:
    assert router.choose() == REPLICA
    fake.health = None
    assert router.choose(written=101) == (Target.PRIMARY, Fallback.DOWN)


# --- settings --------------------------------------------------------------------------------


PRIMARY = "postgresql+psycopg://app@db1/loyalty"


def test_no_replica_url_means_no_replica() -> None:
    assert config.replica_url(None, PRIMARY) is None
    assert config.replica_url("", PRIMARY) is None


def test_a_replica_url_is_normalized_as_database_url_is() -> None:
    assert config.replica_url("postgres://app@db2/loyalty", PRIMARY) == (
        "postgresql+psycopg://app@db2/loyalty"
    )


@pytest.mark.parametrize(
    ("replica", "primary"),
    [
        ("postgresql://app@db2/loyalty", "sqlite:///instance/loyalty.db"),
        ("sqlite:///r.db", PRIMARY),
    ],
)
def test_sqlite_has_no_replica(replica: str, primary: str) -> None:
    with pytest.raises(ValueError, match="SQLite has no replicas"):
        config.replica_url(replica, primary)


def test_the_replica_has_its_own_pool_and_a_short_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOYALTY_REPLICA_POOL_SIZE", "12")
    monkeypatch.setenv("LOYALTY_REPLICA_MAX_OVERFLOW", "3")
    options = config.replica_engine_options(PRIMARY)

    assert (options["pool_size"], options["max_overflow"]) == (12, 3)
    assert options["connect_args"]["connect_timeout"] == config.REPLICA_CONNECT_TIMEOUT_SECONDS
    assert config.engine_options(PRIMARY)["connect_args"]["connect_timeout"] == 5


@pytest.mark.parametrize(("raw", "seconds"), [(None, 5.0), ("0", 0.0), ("2.5", 2.5)])
def test_the_allowed_lag_is_a_number_of_seconds(
    monkeypatch: pytest.MonkeyPatch, raw: str | None, seconds: float
) -> None:
    if raw is None:
        monkeypatch.delenv("LOYALTY_REPLICA_MAX_LAG_SECONDS", raising=False)
    else:
        monkeypatch.setenv("LOYALTY_REPLICA_MAX_LAG_SECONDS", raw)
    assert config.replica_max_lag() == seconds


@pytest.mark.parametrize("raw", ["-1", "soon", "nan", "inf"])
def test_a_bad_allowed_lag_stops_the_start(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("LOYALTY_REPLICA_MAX_LAG_SECONDS", raw)
    with pytest.raises(ValueError, match="LOYALTY_REPLICA_MAX_LAG_SECONDS"):
        config.replica_max_lag()
