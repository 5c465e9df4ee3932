"""What every checkout call reads and admins rarely change, kept per process: the program
settings, the tiers and the active earning rules.

Reading them from the database on every request cost three ORM queries on each order. Instead
each transaction reads one integer, ``program_settings.config_version``, and reuses this
process's copy while the number is unchanged. Every change to the settings, a tier or a rule
sets a new random number in its own transaction (``changed``), so a worker uses the new
configuration from the first transaction that starts after the change commits: never a stale
copy.

The copies are detached: read them, never change them (admin services load the rows).
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from loyalty.db import transaction_cache
from loyalty.program.models import ProgramSettings
from loyalty.rules import policy
from loyalty.rules.models import EarningRule, RuleVersion
from loyalty.tiers.models import Tier

_CACHED = "program_config"
_VERSION = sa.select(ProgramSettings.config_version).where(ProgramSettings.id == 1)
_BUMP = (
    sa.update(ProgramSettings)
    .where(ProgramSettings.id == 1)
    .values(
        config_version=sa.bindparam("new_version"),
        # Not a change of the settings themselves: their updated_at stays.
        updated_at=ProgramSettings.updated_at,
    )
)
_RULES = (
    sa.select(
        EarningRule.id,
        EarningRule.public_id,
        EarningRule.kind,
        RuleVersion.version,
        RuleVersion.name,
        RuleVersion.priority,
        RuleVersion.starts_at,
        RuleVersion.ends_at,
        RuleVersion.config,
        RuleVersion.conditions,
        RuleVersion.caps,
    )
    .join(
        RuleVersion,
        sa.and_(
            RuleVersion.rule_id == EarningRule.id,
            RuleVersion.version == EarningRule.current_version,
        ),
    )
    .where(EarningRule.active.is_(True))
    .order_by(EarningRule.id)
)


@dataclass(frozen=True, slots=True)
class ActiveRule:
    """An active rule's current version: its row id (for awards), its per-member cap, and
    the definition as the pure policy sees it."""

    id: int
    per_member_cap: dict[str, Any]
    policy: policy.Rule


@dataclass(frozen=True, slots=True)
class ProgramConfig:
    version: int
    settings: ProgramSettings
    tiers: tuple[Tier, ...]  # lowest rank first
    rules: tuple[ActiveRule, ...]

    def tier(self, tier_id: int | None) -> Tier | None:
        return next((tier for tier in self.tiers if tier.id == tier_id), None)

    def rules_of(self, kinds: tuple[str, ...] | None) -> list[ActiveRule]:
        return [rule for rule in self.rules if kinds is None or rule.policy.kind in kinds]


_lock = threading.Lock()
# One copy per database (the test suite talks to two in one process).
_copies: dict[str, ProgramConfig] = {}


def current(session: Session, version: int | None = None) -> ProgramConfig:
    """The configuration as of this transaction (one small query per transaction, none when
    the caller read `version` in this transaction already: see ``version_column``)."""
    cache = transaction_cache(session)
    if _CACHED in cache:
        return cache[_CACHED]  # type: ignore[no-any-return]
    connection = session.connection()
    if version is None:
        version = connection.execute(_VERSION).scalar_one()
    database = str(connection.engine.url)
    with _lock:
        config = _copies.get(database)
    if config is None or config.version != version:
        config = _load(connection, version)
        with _lock:
            _copies[database] = config
    cache[_CACHED] = config
    return config


def version_column() -> sa.Label[int]:
    """The config version as a column, for a hot query to read it along with its rows."""
    return _VERSION.scalar_subquery().label("config_version")


def new_version() -> int:
    """A fresh config version: random, positive, fits the BIGINT column.

    Not ``+ 1``: a transaction that bumps the number and then rolls back hands the same
    number back, and the next change would bump it to a value some process may already hold
    a copy of, with other rules and tiers (a rolled-back admin change, or a test's rolled-back
    transaction). A random 62-bit number is never handed out twice in practice.
    """
    return secrets.randbits(62) or 1


def changed(session: Session) -> None:
    """Record, in the caller's transaction, that the settings, a tier or a rule changed."""
    session.execute(_BUMP, {"new_version": new_version()})
    transaction_cache(session).pop(_CACHED, None)


def _load(connection: Connection, version: int) -> ProgramConfig:
    settings_row = connection.execute(sa.select(ProgramSettings.__table__)).one()
    tier_rows = connection.execute(sa.select(Tier.__table__).order_by(Tier.rank)).all()
    rules = tuple(
        ActiveRule(
            id=row.id,
            per_member_cap=dict(row.caps.get("per_member") or {}),
            policy=policy.to_policy(row.public_id, row.kind, row.version, row._asdict()),
        )
        for row in connection.execute(_RULES)
    )
    return ProgramConfig(
        version=version,
        settings=ProgramSettings(**settings_row._asdict()),
        tiers=tuple(Tier(**row._asdict()) for row in tier_rows),
        rules=rules,
    )
