"""Importing members and opening balances from CSV (order history: loyalty.imports.orders).

Rows are validated one by one (loyalty.imports.rows); with `all_or_nothing` a single bad row
stops the import before anything is written, otherwise the good rows are imported and the bad
ones reported. Re-running an import changes nothing: members are matched on external_id, and
a member's opening balance is imported once (its ledger transaction is referenced
`import:balance`).

A file imports entirely or not at all: every row is validated (by the API's own bounds)
before anything is written, and the writes are one transaction, so a failure half-way (the
database gone, a bug) leaves nothing behind. Speed matters (a shop brings hundreds of
thousands of members), so rows are written with SQLAlchemy Core in batches of statements
inside that transaction; a balance import holds its members' locks until it commits.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.db import Base, insert_ignoring_conflicts, transaction, utcnow
from loyalty.imports.rows import (
    ImportRejected,
    ImportResult,
    Rejected,
    id_field,
    moment_field,
    text_field,
    validate,
    whole_field,
)
from loyalty.ledger.models import (
    Account,
    LedgerTransaction,
    MemberBalance,
    TransactionKind,
)
from loyalty.ledger.policy import MAX_POINTS
from loyalty.ledger.postings import Credit, credit_many
from loyalty.members.models import CONSENT_CHANNELS, Member, MemberStatus
from loyalty.program.models import ProgramSettings
from loyalty.program.services import get_settings
from loyalty.tiers import services as tiers

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
BALANCE_REFERENCE = "import:balance"


def _member_row(row: dict[str, str]) -> dict[str, Any]:
    id_field(row, "external_id")
    email = text_field(row, "email", 320)
    if email and not EMAIL.match(email):
        raise ValueError("email: not an email address")
    try:
        birthday = dt.date.fromisoformat(row["birthday"]) if row.get("birthday") else None
    except ValueError:
        raise ValueError("birthday: not a date (1990-06-30)") from None
    if birthday and birthday > dt.date.today():  # noqa: DTZ011 - a calendar date, no time zone
        raise ValueError("birthday: in the future")
    status = row.get("status") or MemberStatus.ACTIVE.value
    if status not in {s.value for s in MemberStatus}:
        raise ValueError("status: active, suspended or closed")
    return {
        "external_id": row["external_id"],
        "email": email,
        "name": text_field(row, "name", 200),
        "birthday": birthday,
        "status": status,
        **{channel: _consent_field(row, channel) for channel in CONSENT_CHANNELS},
    }


def _consent_field(row: dict[str, str], name: str) -> bool | None:
    """true or false; empty or absent: never asked."""
    value = (row.get(name) or "").strip()
    if value not in ("", "true", "false"):
        raise ValueError(f"{name}: true, false or empty")
    return None if not value else value == "true"


def _with_consent_times(row: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    # Consent the shop collected before counts from the import: its own time is unknown.
    fields = dict(row)
    for channel in CONSENT_CHANNELS:
        granted = fields.pop(channel)
        fields[channel] = bool(granted)
        fields[f"{channel}_changed_at"] = None if granted is None else now
    return fields


def _balance_row(row: dict[str, str], now: dt.datetime) -> dict[str, Any]:
    id_field(row, "external_id")
    points = whole_field(row, "points", MAX_POINTS, "points")
    expires_at = moment_field(row, "expires_at")
    if expires_at and expires_at <= now:
        raise ValueError("expires_at: already passed")
    return {"external_id": row["external_id"], "points": points, "expires_at": expires_at}


def _insert_ignore(
    session: Session, model: type[Base], rows: list[dict[str, Any]], key: str
) -> None:
    if rows:
        session.execute(insert_ignoring_conflicts(session, model, [key]), rows)


def _batches(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def import_members(
    session: Session,
    stream: TextIO,
    *,
    all_or_nothing: bool = True,
    batch_size: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import members (columns: external_id, and optionally email, name, birthday, status,
    marketing_email, marketing_sms).
    Members already enrolled are skipped, not changed. Imported members get no signup
    points: they are not new to the shop; they get the tier that needs no points, if any.
    Raises ImportRejected (all-or-nothing only)."""
    valid, rejected = validate(stream, {"external_id"}, _member_row)
    if rejected and all_or_nothing:
        raise ImportRejected(rejected)
    result = ImportResult(rejected=rejected)
    now = utcnow()
    with transaction(session):
        for batch in _batches([row for _, row, _ in valid], batch_size):
            ids = [row["external_id"] for row in batch]
            existing = set(
                session.execute(
                    sa.select(Member.external_id).where(Member.external_id.in_(ids))
                ).scalars()
            )
            new = [
                {
                    **_with_consent_times(row, now),
                    "metadata": {},
                    "enrolled_at": now,
                    "updated_at": now,
                }
                for row in batch
                if row["external_id"] not in existing
            ]
            _insert_ignore(session, Member, new, "external_id")
            created = list(
                session.execute(
                    sa.select(Member.id).where(
                        Member.external_id.in_([row["external_id"] for row in new])
                    )
                ).scalars()
            )
            # As enrolment does: a tier that needs no points applies from the start.
            tiers.enter_tier(session, created, now)
            _insert_ignore(
                session,
                MemberBalance,
                [
                    {
                        "member_id": member_id,
                        "available": 0,
                        "pending": 0,
                        "held": 0,
                        "updated_at": now,
                    }
                    for member_id in created
                ],
                "member_id",
            )
            result.imported += len(new)
            result.skipped += len(batch) - len(new)
            if progress:
                progress(len(batch))
    return result


def import_balances(
    session: Session,
    stream: TextIO,
    *,
    all_or_nothing: bool = True,
    batch_size: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import opening balances (columns: external_id, points, optionally expires_at), each
    as one ledger transaction from the program's issued account into a new available lot.
    A member whose balance was imported before is skipped. Unknown members are rejected.
    Raises ImportRejected (all-or-nothing only)."""
    now = utcnow()
    valid, rejected = validate(
        stream, {"external_id", "points"}, lambda row: _balance_row(row, now)
    )
    known: dict[str, int] = {}
    for batch in _batches([row["external_id"] for _, row, _ in valid], 5000):
        known.update(
            session.execute(
                sa.select(Member.external_id, Member.id).where(Member.external_id.in_(batch))
            ).all()
        )
    kept = []
    for line, row, as_written in valid:
        if row["external_id"] in known:
            kept.append({**row, "member_id": known[row["external_id"]]})
        else:
            rejected.append(Rejected(line, as_written, "external_id: no such member"))
    if rejected and all_or_nothing:
        raise ImportRejected(sorted(rejected, key=lambda r: r.line))
    result = ImportResult(rejected=sorted(rejected, key=lambda r: r.line))
    settings = get_settings(session)
    with transaction(session):
        for batch in _batches(kept, batch_size):
            written = _write_balances(session, settings, batch, now)
            result.imported += written
            result.skipped += len(batch) - written
            if progress:
                progress(len(batch))
    return result


def _write_balances(
    session: Session,
    settings: ProgramSettings,
    batch: list[dict[str, Any]],
    now: dt.datetime,
) -> int:
    member_ids = sorted(row["member_id"] for row in batch)
    # Lock the batch's balance rows in id order: live checkouts on these members wait, and
    # two imports cannot deadlock.
    balances = {
        b.member_id: b
        for b in session.execute(
            sa.select(MemberBalance)
            .where(MemberBalance.member_id.in_(member_ids))
            .order_by(MemberBalance.member_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalars()
    }
    done = set(
        session.execute(
            sa.select(LedgerTransaction.member_id).where(
                LedgerTransaction.member_id.in_(member_ids),
                LedgerTransaction.reference == BALANCE_REFERENCE,
            )
        ).scalars()
    )
    credits = [
        Credit(
            balances[row["member_id"]],
            row["points"],
            TransactionKind.IMPORT,
            Account.ISSUED,
            pending=False,
            expires_at=row["expires_at"],
            reference=BALANCE_REFERENCE,
            reason="opening balance imported",
            actor="import",
        )
        for row in batch
        if row["member_id"] not in done and row["points"] > 0
    ]
    if credits:
        credit_many(session, settings, credits, now)
        session.flush()
    return len(credits)
