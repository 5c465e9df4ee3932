from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import Base, BigIntPK, utcnow


class MemberEvent(Base):
    __tablename__ = "member_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(200), unique=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"), index=True)
    type: Mapped[str] = mapped_column(sa.String(64))
    occurred_at: Mapped[dt.datetime]
    attributes: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    points_earned: Mapped[int] = mapped_column(sa.BigInteger)
    breakdown: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
