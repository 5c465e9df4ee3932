"""Creating, listing, revoking and checking API keys."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.auth.models import KEY_SCOPES, ApiKey, Scope
from loyalty.db import transaction, utcnow
from loyalty.errors import Conflict, NotFound, ValidationFailed
from loyalty.program import config

KEY_PREFIX = "lk_"
_SCOPES = {scope.value: scope for scope in KEY_SCOPES}


class KeyNameTaken(Conflict):
    code = "key_name_taken"
    title = "An API key with this name exists"


@dataclass(frozen=True, slots=True)
class KeyView:
    """An API key as listed: never the key itself, nor its hash."""

    name: str
    prefix: str  # the key's first characters, to recognise it
    scopes: tuple[Scope, ...]  # sorted
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def parse_scopes(stored: str) -> tuple[Scope, ...]:
    """A key's stored scopes ("app checkout") as Scopes, sorted; unknown ones are ignored."""
    return tuple(sorted(_SCOPES[name] for name in set(stored.split()) if name in _SCOPES))


def _key_view(key: ApiKey) -> KeyView:
    return KeyView(
        name=key.name,
        prefix=key.prefix,
        scopes=parse_scopes(key.scopes),
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def create_key(
    session: Session, name: str, scopes: Iterable[str], actor: str | None = "cli"
) -> tuple[KeyView, str]:
    """Create a key; return it with the raw secret, which is shown once and never stored.

    Raises ValidationFailed for an empty name or unknown scope, KeyNameTaken for a used name.
    """
    scope_list = sorted(set(scopes))
    unknown = [s for s in scope_list if s not in _SCOPES]
    if not name.strip() or len(name) > 100:
        raise ValidationFailed({"name": ["Must be 1 to 100 characters."]})
    if unknown or not scope_list:
        raise ValidationFailed(
            {"scopes": [f"Choose from {', '.join(s.value for s in KEY_SCOPES)}."]}
        )
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    with transaction(session):
        if session.scalar(sa.select(ApiKey.id).where(ApiKey.name == name)) is not None:
            raise KeyNameTaken(f"An API key named {name!r} already exists.")
        key = ApiKey(name=name, key_hash=hash_key(raw), prefix=raw[:8], scopes=" ".join(scope_list))
        session.add(key)
        session.flush()
        audit.record(session, actor, "key.create", "api_key", name, None, audit.snapshot(key))
        return _key_view(key), raw


def list_keys(session: Session) -> list[KeyView]:
    """Every key, revoked ones included, oldest first."""
    return [
        _key_view(key) for key in session.execute(sa.select(ApiKey).order_by(ApiKey.id)).scalars()
    ]


def revoke_key(session: Session, name: str, actor: str | None = "cli") -> KeyView:
    """Revoke the key called `name` (revoking twice is harmless) and return it. Raises
    NotFound."""
    with transaction(session):
        key = session.execute(sa.select(ApiKey).where(ApiKey.name == name)).scalar_one_or_none()
        if key is None:
            raise NotFound(f"No API key named {name!r}.")
        if key.revoked_at is None:
            before = audit.snapshot(key)
            key.revoked_at = utcnow()
            audit.record(session, actor, "key.revoke", "api_key", name, before, audit.snapshot(key))
        return _key_view(key)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: an API key, or a member token (which speaks for its key's shop, for
    one member only)."""

    key_id: int  # a member token's is the key that minted it: its Idempotency-Keys are the key's
    name: str
    scopes: frozenset[Scope]
    member_external_id: str | None = None  # a member token's member
    token_id: int | None = None  # a member token's row, which its rate limit counts by

    def may(self, allowed: Iterable[str]) -> bool:
        """Whether the key has one of the `allowed` scopes (admin may do everything)."""
        return Scope.ADMIN in self.scopes or not self.scopes.isdisjoint(allowed)


# Built once: this runs on every request, and a prebuilt Core statement costs a third of
# the CPU of building and running an ORM query each time. It also reads the program's
# configuration version, which nearly every request needs next (see loyalty.program.config).
_CALLER_BY_HASH = sa.select(ApiKey.id, ApiKey.name, ApiKey.scopes, config.version_column()).where(
    ApiKey.key_hash == sa.bindparam("key_hash"), ApiKey.revoked_at.is_(None)
)


_CALLER_BY_ID = sa.select(ApiKey.id, ApiKey.name, ApiKey.scopes).where(
    ApiKey.id == sa.bindparam("key_id"), ApiKey.revoked_at.is_(None)
)


def _caller(row: Any) -> Caller:
    return Caller(key_id=row.id, name=row.name, scopes=frozenset(parse_scopes(row.scopes)))


def authenticate(session: Session, raw_key: str) -> Caller | None:
    """The caller behind a raw key, or None for an unknown or revoked key.

    Not cached: a revoked key stops working at once, in every worker.
    """
    row = (
        session.connection().execute(_CALLER_BY_HASH, {"key_hash": hash_key(raw_key)}).one_or_none()
    )
    if row is None:
        return None
    config.current(session, row.config_version)
    return _caller(row)


def caller_by_key_id(session: Session, key_id: int) -> Caller | None:
    """The caller of a key already authenticated once (a console session holds its id), or
    None once the key is revoked: checked on every request, so revoking takes effect at
    once."""
    row = session.connection().execute(_CALLER_BY_ID, {"key_id": key_id}).one_or_none()
    return None if row is None else _caller(row)
