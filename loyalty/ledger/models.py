"""Ledger tables.

- ``ledger_transactions`` / ``ledger_entries``: append-only; the entries of a transaction sum
  to zero. Member accounts (available, pending, held) carry the member's points; program
  accounts (issued, redeemed, expired, adjusted) are their counterparts. Program-side entries
  carry the member too, so program totals are aggregations and never a hot row.
- ``member_balances``: one row per member, created at enrolment, holding the sums of the
  member's accounts. It is the row writers lock (``FOR UPDATE``), so a member's writes
  serialize while different members never wait on each other.
- ``point_lots``: where earned points sit, with ``available_at`` and ``expires_at``; spending
  consumes lots soonest-expiring first.
- ``redemptions`` / ``redemption_allocations``: holds, the ledger's two-phase transfers. A hold
  moves points to the held account and remembers the lots it took them from; capture spends
  them, release (or the hold running out, which settling notices) puts them back.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from loyalty.db import Base, BigIntPK, StrEnumType, utcnow
from loyalty.ids import time_ordered_uuid


class Account(enum.StrEnum):
    AVAILABLE = "available"
    PENDING = "pending"
    HELD = "held"
    ISSUED = "issued"
    REDEEMED = "redeemed"
    EXPIRED = "expired"
    ADJUSTED = "adjusted"


MEMBER_ACCOUNTS = (Account.AVAILABLE, Account.PENDING, Account.HELD)


class TransactionKind(enum.StrEnum):
    EARN = "earn"
    MATURE = "mature"
    EXPIRE = "expire"
    ADJUST = "adjust"
    HOLD = "hold"
    CAPTURE = "capture"
    RELEASE = "release"
    REVERSE = "reverse"
    RESTORE = "restore"
    REDEEM = "redeem"
    IMPORT = "import"
    # A closed member's points, given up to the program.
    FORFEIT = "forfeit"
    # A duplicate's points moving to the member it was merged into (a pair, one each).
    MERGE = "merge"


class LotState(enum.StrEnum):
    PENDING = "pending"
    AVAILABLE = "available"
    EXPIRED = "expired"


class MemberBalance(Base):
    __tablename__ = "member_balances"

    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"), primary_key=True)
    available: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    pending: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    held: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    # The earliest time a lot matures or expires: reads settle the member only when it passed.
    next_due_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    last_activity_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LedgerTransaction(Base):
    __tablename__ = "ledger_transactions"
    __table_args__ = (
        sa.Index("ix_ledger_transactions_member_id_effective_at", "member_id", "effective_at"),
        # The activity report reads a range of days across all members.
        sa.Index("ix_ledger_transactions_effective_at", "effective_at"),
        # Tier progress and review sum a member's qualifying points over the rolling window
        # from this index alone (index-only), not from one table page per earning.
        sa.Index(
            "ix_ledger_transactions_qualifying_window",
            "member_id",
            "qualifying_at",
            postgresql_include=["qualifying"],
            postgresql_where=sa.text("qualifying <> 0"),
            sqlite_where=sa.text("qualifying <> 0"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    public_id: Mapped[uuid.UUID] = mapped_column(unique=True, default=time_ordered_uuid)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    kind: Mapped[TransactionKind] = mapped_column(StrEnumType(TransactionKind))
    # When the movement took effect (a lot's expiry time, say), which may precede created_at.
    effective_at: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    reference: Mapped[str | None] = mapped_column(sa.String(200))
    reason: Mapped[str | None] = mapped_column(sa.String(500))
    actor: Mapped[str | None] = mapped_column(sa.String(100))
    corrects_id: Mapped[int | None] = mapped_column(sa.ForeignKey("ledger_transactions.id"))
    # Points that count towards tiers: earned from orders and events, negative for reversals.
    qualifying: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    # When those points count for the rolling tier window: the earning's time, also for the
    # reversal of a refund, so an earning and its reversal leave the window together.
    qualifying_at: Mapped[dt.datetime | None]
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)

    entries: Mapped[list[LedgerEntry]] = relationship(
        back_populates="transaction", order_by="LedgerEntry.id", lazy="selectin"
    )


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        sa.CheckConstraint("amount <> 0", name="nonzero"),
        sa.Index("ix_ledger_entries_member_id_account", "member_id", "account"),
        # The liability report sums the program accounts over the whole ledger: an index-only
        # scan of this small index (amounts repeat, so it deduplicates well), not the table.
        sa.Index(
            "ix_ledger_entries_program_account_amount",
            "account",
            "amount",
            postgresql_where=sa.text("account IN ('issued', 'redeemed', 'expired', 'adjusted')"),
            sqlite_where=sa.text("account IN ('issued', 'redeemed', 'expired', 'adjusted')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(sa.ForeignKey("ledger_transactions.id"), index=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    account: Mapped[Account] = mapped_column(StrEnumType(Account))
    amount: Mapped[int] = mapped_column(sa.BigInteger)

    transaction: Mapped[LedgerTransaction] = relationship(back_populates="entries")


class PointLot(Base):
    __tablename__ = "point_lots"
    __table_args__ = (
        sa.CheckConstraint("remaining >= 0 AND remaining <= points", name="remaining_bounds"),
        sa.Index("ix_point_lots_member_id_state", "member_id", "state"),
        # A member's live lots with points left, soonest-expiring first: the card's expiring
        # points, spending and the next expiry read only these, never the spent or expired
        # lots that pile up over the years.
        sa.Index(
            "ix_point_lots_live_member_id_expires_at",
            "member_id",
            "expires_at",
            postgresql_where=sa.text("state IN ('pending', 'available') AND remaining > 0"),
            sqlite_where=sa.text("state IN ('pending', 'available') AND remaining > 0"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    transaction_id: Mapped[int] = mapped_column(sa.ForeignKey("ledger_transactions.id"))
    points: Mapped[int] = mapped_column(sa.BigInteger)
    remaining: Mapped[int] = mapped_column(sa.BigInteger)
    state: Mapped[LotState] = mapped_column(StrEnumType(LotState))
    available_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # When the member was told these points expire soon (once per lot).
    expiry_notified_at: Mapped[dt.datetime | None]

    transaction: Mapped[LedgerTransaction] = relationship()


class RedemptionStatus(enum.StrEnum):
    HELD = "held"
    CAPTURED = "captured"
    RELEASED = "released"
    EXPIRED = "expired"


class Redemption(Base):
    __tablename__ = "redemptions"
    __table_args__ = (sa.Index("ix_redemptions_member_id_status", "member_id", "status"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    public_id: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    points: Mapped[int] = mapped_column(sa.BigInteger)
    value: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[RedemptionStatus] = mapped_column(StrEnumType(RedemptionStatus))
    order_ref: Mapped[str | None] = mapped_column(sa.String(128))
    expires_at: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    captured_at: Mapped[dt.datetime | None]
    released_at: Mapped[dt.datetime | None]
    # Points given back by refunds of the order that used this redemption.
    restored_points: Mapped[int] = mapped_column(sa.BigInteger, default=0)

    allocations: Mapped[list[RedemptionAllocation]] = relationship(lazy="select")


class RedemptionAllocation(Base):
    """Which lots a hold took its points from, so a release puts them back where they were
    (with their own expiry dates)."""

    __tablename__ = "redemption_allocations"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    redemption_id: Mapped[int] = mapped_column(sa.ForeignKey("redemptions.id"), index=True)
    lot_id: Mapped[int] = mapped_column(sa.ForeignKey("point_lots.id"))
    points: Mapped[int] = mapped_column(sa.BigInteger)
