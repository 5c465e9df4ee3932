from __future__ import annotations

import datetime as dt
import enum
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import Base, BigIntPK, utcnow


class Scope(enum.StrEnum):
    CHECKOUT = "checkout"
    APP = "app"
    ADMIN = "admin"
    # Held by member tokens only, never by an API key: a route that declares it admits a
    # token minted for the member that its path (or query) names, and no other member.
    MEMBER = "member"


# The scopes an API key may be given.
KEY_SCOPES = (Scope.CHECKOUT, Scope.APP, Scope.ADMIN)


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


class MemberToken(Base):
    """A short-lived token for one member, minted by the shop's backend for its customer app
    (like Stripe's ephemeral keys). As for API keys, only its SHA-256 is kept."""

    __tablename__ = "member_tokens"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    public_id: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"), index=True)
    # The key that minted it: revoking that key ends its tokens too.
    api_key_id: Mapped[int] = mapped_column(sa.ForeignKey("api_keys.id"), index=True)
    created_at: Mapped[dt.datetime]
    # Indexed for the jobs' purge of ended tokens: an app mints one every few minutes.
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    revoked_at: Mapped[dt.datetime | None]
