"""Member tokens: the shop's backend mints a short-lived token for one member, and the
customer app calls that member's routes directly with it (like Stripe's ephemeral keys).

A token is random (256 bits) and shown once; only its SHA-256 is kept (``hash_key``, as for
API keys). It is checked on every request against the clock (``utcnow``, which tests set):
expired, revoked, minted by a key since revoked, or for a member since closed, it admits
nothing, at once and in every worker, since nothing is cached.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import secrets
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.auth.models import ApiKey, MemberToken, Scope
from loyalty.auth.services import Caller, hash_key
from loyalty.db import transaction, utcnow
from loyalty.errors import NotFound
from loyalty.members.exceptions import MemberClosed
from loyalty.members.lookup import find_member
from loyalty.members.models import Member, MemberStatus
from loyalty.program import config

log = logging.getLogger(__name__)

TOKEN_PREFIX = "lmt_"  # noqa: S105 - a prefix to tell tokens from keys, no secret
# A token lives in a phone's memory and travels in every request of the app: an hour at most
# bounds what a leaked one can do; a minute at least leaves time to use it.
MIN_TTL = dt.timedelta(minutes=1)
MAX_TTL = dt.timedelta(hours=1)
# An ended token's row is kept this long, for whoever asks why an app was signed out, then
# purged by the jobs: every signed-in app mints one every few minutes.
KEPT_AFTER_EXPIRY = dt.timedelta(days=1)


class TokenNotFound(NotFound):
    title = "Member token not found"


class Refusal(enum.Enum):
    """Why a token admits nothing, as far as its holder may know."""

    UNKNOWN = "unknown"  # never minted, revoked, its key revoked, or its member closed
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class MintedToken:
    """A token just minted: the only time `token` itself is shown."""

    public_id: uuid.UUID
    external_id: str
    token: str
    expires_at: dt.datetime


def mint(
    session: Session,
    external_id: str,
    key_id: int,
    ttl: dt.timedelta,
    now: dt.datetime | None = None,
) -> MintedToken:
    """Mint a token for the member `external_id`, by the API key `key_id`, good for `ttl`
    (between MIN_TTL and MAX_TTL; the caller bounds it). Return it with its secret.

    Raises MemberNotFound, and MemberClosed for a closed member (a suspended member may still
    look at their card; what they may not do, the services refuse as for any caller).
    """
    now = now or utcnow()
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction(session):
        member = find_member(session, external_id)
        if member.status == MemberStatus.CLOSED:
            raise MemberClosed(f"Member {external_id!r} is closed: no token can be minted.")
        token = MemberToken(
            token_hash=hash_key(raw),
            member_id=member.id,
            api_key_id=key_id,
            created_at=now,
            expires_at=now + ttl,
        )
        session.add(token)
        session.flush()
        minted = MintedToken(token.public_id, member.external_id, raw, token.expires_at)
    # No audit entry: the shop's backend mints tokens as part of its app's sign-in, not an
    # admin's change. A log line lets an operator follow a token from mint to use.
    log.info(
        "member token minted",
        extra={"member": external_id, "token": str(minted.public_id), "key_id": key_id},
    )
    return minted


def revoke(
    session: Session, external_id: str, public_id: uuid.UUID, now: dt.datetime | None = None
) -> None:
    """Revoke the member's token `public_id` (revoking it twice, or once expired, is
    harmless). Raises MemberNotFound, and TokenNotFound for a token not the member's."""
    now = now or utcnow()
    with transaction(session):
        member = find_member(session, external_id)
        token = session.execute(
            sa.select(MemberToken).where(
                MemberToken.public_id == public_id, MemberToken.member_id == member.id
            )
        ).scalar_one_or_none()
        if token is None:
            raise TokenNotFound(f"Member {external_id!r} has no token {public_id}.")
        if token.revoked_at is None:
            token.revoked_at = now


def revoke_all(
    session: Session,
    external_id: str,
    now: dt.datetime | None = None,
    *,
    admin: str | None = None,
) -> int:
    """Revoke every live token of the member (signing them out of every device); return how
    many were live. An `admin` doing it (the console) is audited as member_tokens.revoke;
    the shop's backend signing its app out is not. Raises MemberNotFound."""
    now = now or utcnow()
    with transaction(session):
        member = find_member(session, external_id)
        result = session.execute(
            sa.update(MemberToken)
            .where(
                MemberToken.member_id == member.id,
                MemberToken.revoked_at.is_(None),
                MemberToken.expires_at > now,
            )
            .values(revoked_at=now)
        )
        revoked = int(result.rowcount)  # type: ignore[attr-defined]
        if admin is not None:
            audit.record(
                session,
                admin,
                "member_tokens.revoke",
                "member",
                external_id,
                None,
                {"revoked": revoked},
                now,
            )
        return revoked


@dataclass(frozen=True, slots=True)
class LiveToken:
    """A token that admits its member now, as an admin sees it (never the secret)."""

    public_id: uuid.UUID
    minted_by: str  # the API key's name
    created_at: dt.datetime
    expires_at: dt.datetime


def live_tokens(session: Session, member_id: int, now: dt.datetime) -> list[LiveToken]:
    """The member's tokens that are neither expired nor revoked, newest first."""
    rows = session.execute(
        sa.select(
            MemberToken.public_id, ApiKey.name, MemberToken.created_at, MemberToken.expires_at
        )
        .join(ApiKey, ApiKey.id == MemberToken.api_key_id)
        .where(
            MemberToken.member_id == member_id,
            MemberToken.revoked_at.is_(None),
            MemberToken.expires_at > now,
            ApiKey.revoked_at.is_(None),
        )
        .order_by(MemberToken.id.desc())
    )
    return [LiveToken(*row) for row in rows]


def purge_ended(session: Session, now: dt.datetime | None = None, batch_size: int = 1000) -> int:
    """Delete the tokens that expired over KEPT_AFTER_EXPIRY before `now` (a revoked token
    expires within MAX_TTL of its revocation all the same), `batch_size` rows per
    transaction, so no long transaction holds the table; return how many. Several workers
    may purge at once: a row another deleted first is not counted twice. Raises nothing."""
    now = now or utcnow()
    purged = 0
    while True:
        with transaction(session):
            batch = (
                sa.select(MemberToken.id)
                .where(MemberToken.expires_at < now - KEPT_AFTER_EXPIRY)
                .limit(batch_size)
            )
            result = session.execute(sa.delete(MemberToken).where(MemberToken.id.in_(batch)))
            deleted = int(result.rowcount)  # type: ignore[attr-defined]
        purged += deleted
        if deleted < batch_size:
            return purged


# Built once, as for API keys (loyalty.auth.services): it runs on every request of the app.
_TOKEN_BY_HASH = (
    sa.select(
        MemberToken.id,
        MemberToken.public_id,
        MemberToken.api_key_id,
        MemberToken.expires_at,
        Member.external_id,
        config.version_column(),
    )
    .join(Member, Member.id == MemberToken.member_id)
    .join(ApiKey, ApiKey.id == MemberToken.api_key_id)
    .where(
        MemberToken.token_hash == sa.bindparam("token_hash"),
        MemberToken.revoked_at.is_(None),
        ApiKey.revoked_at.is_(None),
        Member.status != MemberStatus.CLOSED,
    )
)


def is_member_token(raw: str) -> bool:
    """Whether `raw` has the shape of a member token (as against an API key)."""
    return raw.startswith(TOKEN_PREFIX)


def authenticate(
    session: Session, raw_token: str, now: dt.datetime | None = None
) -> Caller | Refusal:
    """The caller behind a member token: scope ``member``, for its member only; or why it
    admits nothing. Raises nothing."""
    now = now or utcnow()
    row = (
        session.connection()
        .execute(_TOKEN_BY_HASH, {"token_hash": hash_key(raw_token)})
        .one_or_none()
    )
    if row is None:
        return Refusal.UNKNOWN
    if row.expires_at <= now:
        return Refusal.EXPIRED
    config.current(session, row.config_version)
    return Caller(
        key_id=row.api_key_id,
        name=f"member token {row.public_id}",
        scopes=frozenset({Scope.MEMBER}),
        member_external_id=row.external_id,
        token_id=row.id,
    )
