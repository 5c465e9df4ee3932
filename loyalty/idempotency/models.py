from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import BigIntPK, utcnow
from loyalty.extensions import db


class IdempotencyRecord(db.Model):  # type: ignore[name-defined]
    __tablename__ = "idempotency_keys"
    __table_args__ = (sa.UniqueConstraint("api_key_id", "key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    api_key_id: Mapped[int] = mapped_column(sa.ForeignKey("api_keys.id"))
    key: Mapped[str] = mapped_column(sa.String(255))
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    # NULL while the first request runs; set, with the body, when its response is stored.
    response_status: Mapped[int | None]
    response_body: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Renewed when a request takes the key over; a stale lease means that request died.
    locked_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
