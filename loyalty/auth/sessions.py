"""Console sessions, kept on the server.

Signing in with an admin key starts one: the browser's cookie carries a random token and the
table keeps only its SHA-256 (``hash_key``, as for API keys). A session ends when the admin
signs out (the row is deleted, so a copy of the cookie reads and writes nothing more), when
it sits idle past the idle timeout, when it reaches the absolute timeout, or when its key is
revoked. The timeouts are the console's settings (loyalty.config); time comes from ``now``
or ``utcnow``, which tests control.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.auth.models import ApiKey, ConsoleSession
from loyalty.auth.services import Caller, hash_key, parse_scopes
from loyalty.db import transaction, utcnow

# A session seen again within this long is not written again: the idle timeout is counted in
# minutes, so a minute of slack costs nothing and spares a write on nearly every page view.
TOUCH_AFTER = dt.timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long a session lives: `idle` since its last request, `absolute` since sign-in."""

    idle: dt.timedelta
    absolute: dt.timedelta


_SESSION_BY_HASH = (
    sa.select(
        ConsoleSession.id,
        ConsoleSession.created_at,
        ConsoleSession.last_seen_at,
        ApiKey.id.label("key_id"),
        ApiKey.name,
        ApiKey.scopes,
        ApiKey.revoked_at,
    )
    .join(ApiKey, ApiKey.id == ConsoleSession.key_id)
    .where(ConsoleSession.token_hash == sa.bindparam("token_hash"))
)


def _timed_out(timeouts: Timeouts, now: dt.datetime) -> sa.ColumnElement[bool]:
    return sa.or_(
        ConsoleSession.created_at <= now - timeouts.absolute,
        ConsoleSession.last_seen_at <= now - timeouts.idle,
    )


def start(
    session: Session, caller: Caller, timeouts: Timeouts, now: dt.datetime | None = None
) -> str:
    """Start a session for `caller` (a key just authenticated); return its token, for the
    cookie only: it is never stored. Sessions that have timed out, anyone's, are deleted on
    the way, so the table holds live sessions and the few not yet noticed. Raises nothing."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    with transaction(session):
        session.execute(sa.delete(ConsoleSession).where(_timed_out(timeouts, now)))
        session.add(
            ConsoleSession(
                token_hash=hash_key(token), key_id=caller.key_id, created_at=now, last_seen_at=now
            )
        )
    return token


def resume(
    session: Session, token: str, timeouts: Timeouts, now: dt.datetime | None = None
) -> Caller | None:
    """The caller behind a session's token, or None when the session is unknown, ended,
    idle too long, past its absolute lifetime, or its key was revoked (a session found so is
    deleted). A live session's last_seen_at moves to `now` when it is over a minute old.
    Raises nothing."""
    now = now or utcnow()
    with transaction(session):
        row = (
            session.connection()
            .execute(_SESSION_BY_HASH, {"token_hash": hash_key(token)})
            .one_or_none()
        )
        if row is None:
            return None
        if (
            row.revoked_at is not None
            or row.created_at <= now - timeouts.absolute
            or row.last_seen_at <= now - timeouts.idle
        ):
            session.execute(sa.delete(ConsoleSession).where(ConsoleSession.id == row.id))
            return None
        if now - row.last_seen_at >= TOUCH_AFTER:
            session.execute(
                sa.update(ConsoleSession)
                .where(ConsoleSession.id == row.id)
                .values(last_seen_at=now)
            )
        return Caller(key_id=row.key_id, name=row.name, scopes=frozenset(parse_scopes(row.scopes)))


def end(session: Session, token: str) -> None:
    """End the session behind `token` (signing out); ending it twice, or an unknown token,
    is harmless. Raises nothing."""
    with transaction(session):
        session.execute(
            sa.delete(ConsoleSession).where(ConsoleSession.token_hash == hash_key(token))
        )
