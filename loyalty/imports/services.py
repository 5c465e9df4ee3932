"""Importing members and opening balances from CSV.

Rows are validated one by one; with `all_or_nothing` a single bad row stops the import
before anything is written, otherwise the good rows are imported and the bad ones reported.
Re-running an import changes nothing: members are matched on external_id, and a member's
opening balance is imported once (its ledger transaction is referenced `import:balance`).

A file imports entirely or not at all: every row is validated (by the API's own bounds)
before anything is written, and the writes are one transaction, so a failure half-way (the
database gone, a bug) leaves nothing behind. Speed matters (a shop brings hundreds of
thousands of members), so rows are written with SQLAlchemy Core in batches of statements
inside that transaction; a balance import holds its members' locks until it commits.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.db import Base, insert_ignoring_conflicts, transaction, utcnow
from loyalty.ledger.models import (
    Account,
    LedgerTransaction,
    MemberBalance,
    TransactionKind,
)
from loyalty.ledger.policy import MAX_POINTS
from loyalty.ledger.postings import Credit, credit_many
from loyalty.members.models import EXTERNAL_ID_PATTERN, Member, MemberStatus
from loyalty.program.models import ProgramSettings
from loyalty.program.services import get_settings

EXTERNAL_ID = re.compile(EXTERNAL_ID_PATTERN)
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
BALANCE_REFERENCE = "import:balance"


@dataclass
class Rejected:
    line: int
    row: dict[str, str]
    reason: str


@dataclass
class ImportResult:
    imported: int = 0
    skipped: int = 0
    rejected: list[Rejected] = field(default_factory=list)


class ImportRejected(Exception):
    """An all-or-nothing import found bad rows, or the file itself is not readable CSV
    (`whole_file`); nothing was written."""

    def __init__(self, rejected: list[Rejected], *, whole_file: bool = False) -> None:
        super().__init__(f"{len(rejected)} rows rejected")
        self.rejected = rejected
        self.whole_file = whole_file


def _unreadable(line: int, reason: str) -> ImportRejected:
    return ImportRejected([Rejected(line, {}, reason)], whole_file=True)


def _rows(stream: TextIO, required: set[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """The file's rows with the line each ends on. Raises ImportRejected for a file that is
    not CSV text as a whole (not UTF-8, malformed quoting, a field over the size limit, a
    field spanning lines: an unclosed quote that would swallow the rows after it): no row of
    such a file can be trusted, whatever the mode."""
    reader = csv.DictReader(stream, strict=True)
    try:
        missing = required - set(reader.fieldnames or ())
        if missing:
            raise _unreadable(1, f"missing columns: {', '.join(sorted(missing))}")
        for row in reader:
            values = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            if any("\n" in value or "\r" in value for value in values.values()):
                reason = "a quoted field spans lines (an unclosed quote?)"
                raise _unreadable(reader.line_num, reason)
            yield reader.line_num, values
    except csv.Error as error:
        raise _unreadable(reader.line_num, f"malformed CSV: {error}") from None
    except UnicodeDecodeError:
        raise _unreadable(reader.line_num + 1, "not UTF-8 text") from None


def _text(row: dict[str, str], name: str, longest: int) -> str | None:
    """An optional text field under the API's own bounds: at most `longest` characters, no
    NUL (PostgreSQL text cannot hold it)."""
    value = row.get(name) or None
    if value is None:
        return None
    if "\x00" in value:
        raise ValueError(f"{name}: contains NUL")
    if len(value) > longest:
        raise ValueError(f"{name}: at most {longest} characters")
    return value


def _member_row(row: dict[str, str]) -> dict[str, Any]:
    if not EXTERNAL_ID.match(row["external_id"]):
        raise ValueError("external_id: 1-128 letters, digits or . _ : @ + -")
    email = _text(row, "email", 320)
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
        "name": _text(row, "name", 200),
        "birthday": birthday,
        "status": status,
    }


def _balance_row(row: dict[str, str], now: dt.datetime) -> dict[str, Any]:
    if not EXTERNAL_ID.match(row["external_id"]):
        raise ValueError("external_id: 1-128 letters, digits or . _ : @ + -")
    if not re.fullmatch(r"\d{1,10}", row["points"]):
        raise ValueError("points: a whole number of points, 0 or more")
    points = int(row["points"])
    if points > MAX_POINTS:
        raise ValueError(f"points: at most {MAX_POINTS}")
    expires_at = None
    if row.get("expires_at"):
        try:
            expires_at = dt.datetime.fromisoformat(row["expires_at"])
        except ValueError:
            raise ValueError("expires_at: not a time (2027-06-30T00:00:00+00:00)") from None
        if expires_at.tzinfo is None:
            raise ValueError("expires_at: give a UTC offset (2027-06-30T00:00:00+00:00)")
        try:
            expires_at = expires_at.astimezone(dt.UTC)
        except OverflowError:
            raise ValueError("expires_at: out of range") from None
        if expires_at <= now:
            raise ValueError("expires_at: already passed")
    return {"external_id": row["external_id"], "points": points, "expires_at": expires_at}


def _validate(
    stream: TextIO, required: set[str], parse: Callable[[dict[str, str]], dict[str, Any]]
) -> tuple[list[tuple[int, dict[str, Any], dict[str, str]]], list[Rejected]]:
    """Returns the valid rows as (line, parsed, row as written) and the rejected ones."""
    valid: list[tuple[int, dict[str, Any], dict[str, str]]] = []
    rejected: list[Rejected] = []
    seen: set[str] = set()
    for line, row in _rows(stream, required):
        try:
            parsed = parse(row)
        except (ValueError, KeyError) as error:
            rejected.append(Rejected(line, row, str(error)))
            continue
        if parsed["external_id"] in seen:
            rejected.append(Rejected(line, row, "external_id: appears twice in the file"))
            continue
        seen.add(parsed["external_id"])
        valid.append((line, parsed, row))
    return valid, rejected


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
    """Import members (columns: external_id, and optionally email, name, birthday, status).
    Members already enrolled are skipped, not changed. Imported members get no signup
    points: they are not new to the shop. Raises ImportRejected (all-or-nothing only)."""
    valid, rejected = _validate(stream, {"external_id"}, _member_row)
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
                {**row, "metadata": {}, "enrolled_at": now, "updated_at": now}
                for row in batch
                if row["external_id"] not in existing
            ]
            _insert_ignore(session, Member, new, "external_id")
            created = session.execute(
                sa.select(Member.id).where(
                    Member.external_id.in_([row["external_id"] for row in new])
                )
            ).scalars()
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
    valid, rejected = _validate(
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


def write_report(rejected: list[Rejected], stream: TextIO) -> None:
    """The rejected rows as CSV: line, reason, then the row's own columns."""
    columns = sorted({key for item in rejected for key in item.row})
    writer = csv.DictWriter(stream, fieldnames=["line", "reason", *columns])
    writer.writeheader()
    for item in rejected:
        writer.writerow({"line": item.line, "reason": item.reason, **item.row})
