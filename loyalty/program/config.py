"""What every checkout call reads and admins rarely change, kept per process: the program
settings, and the parts features load under the same version (the tiers, the active earning
rules: ``ProgramConfig.part``).

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from loyalty.db import transaction_cache
from loyalty.program.models import ProgramSettings

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
Part = TypeVar("Part")


@dataclass(frozen=True, slots=True)
class ProgramConfig:
    """The settings as of one config version, and the parts other features load under the
    same version (the tiers, the active rules): each loaded once per process and version."""

    version: int
    settings: ProgramSettings
    _parts: dict[Callable[[Connection], Any], Any] = field(default_factory=dict)

    def part(self, session: Session, loader: Callable[[Connection], Part]) -> Part:
        """What `loader` reads for this version, read at most once per process (two threads
        may both load it first; either copy is right)."""
        if loader not in self._parts:
            self._parts[loader] = loader(session.connection())
        return cast(Part, self._parts[loader])


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
    return ProgramConfig(version=version, settings=ProgramSettings(**settings_row._asdict()))
