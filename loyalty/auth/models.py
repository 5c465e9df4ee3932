from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import Base, BigIntPK, utcnow


class Scope(enum.StrEnum):
    CHECKOUT = "checkout"
    APP = "app"
    ADMIN = "admin"


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    # Only a SHA-256 of the key is kept: keys are 256-bit random, so a slow hash adds nothing.
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(12))
    scopes: Mapped[str] = mapped_column(sa.String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())


class ConsoleSession(Base):
    """A signed-in console session. The browser's cookie holds a random token; only its
    SHA-256 is kept here, as for API keys, so a copy of this table signs nobody in."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    key_id: Mapped[int] = mapped_column(sa.ForeignKey("api_keys.id"), index=True)
    created_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime]
