from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import Base, BigIntPK, StrEnumType, utcnow
from loyalty.members.referral_codes import new_code

# The shop's customer ids travel in URLs: no slashes, spaces or other surprises.
EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,127}$"


# The channels a member consents to marketing on: a column each, and one for when it changed.
CONSENT_CHANNELS = ("marketing_email", "marketing_sms")


class MemberStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class Member(Base):
    __tablename__ = "members"

    # Internal key for joins; the API only ever shows external_id.
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    external_id: Mapped[str] = mapped_column(sa.String(128), unique=True)
    email: Mapped[str | None] = mapped_column(sa.String(320), index=True)
    name: Mapped[str | None] = mapped_column(sa.String(200))
    birthday: Mapped[dt.date | None]
    referred_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("members.id"))
    # What friends enrol with (see loyalty.referrals); random, never derived from the ids.
    # Never NULL (the default gives every new member one, the migration gave every earlier
    # member one), though the column allows it: SQLite makes a column NOT NULL only by copying
    # the table, which every other table refers to.
    referral_code: Mapped[str] = mapped_column(
        sa.String(32), nullable=True, unique=True, index=True, default=new_code
    )
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", sa.JSON, default=dict)
    status: Mapped[MemberStatus] = mapped_column(
        StrEnumType(MemberStatus), default=MemberStatus.ACTIVE
    )
    tier_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tiers.id"), index=True)
    # The member keeps their tier at least until then (its retention since they last qualified).
    tier_retained_until: Mapped[dt.datetime | None]
    enrolled_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Marketing consent per channel, with when it was last given or withdrawn (None: never
    # asked). Without it a member gets no marketing (see the README's "Privacy").
    marketing_email: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    marketing_email_changed_at: Mapped[dt.datetime | None]
    marketing_sms: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    marketing_sms_changed_at: Mapped[dt.datetime | None]
    # When the member's personal data was erased (their external_id is then a pseudonym).
    erased_at: Mapped[dt.datetime | None]
    # A duplicate merged into another member: closed, its points and history with them.
    merged_into_id: Mapped[int | None] = mapped_column(sa.ForeignKey("members.id"), index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def is_active(self) -> bool:
        return self.status == MemberStatus.ACTIVE
