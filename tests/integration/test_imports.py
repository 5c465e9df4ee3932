"""Bulk import from another loyalty system: members, then their opening balances, from CSV.

Every row is validated on its own. By default an import is all or nothing: one bad row rejects
the whole file, with every reason, and nothing is written. With a report, the valid rows are
imported and the rejected ones are written to the report with their line numbers. Re-running
an import imports nothing new. Imported members earn no signup points; an imported balance is
available at once (expiring at its `expires_at`, or under the program's policy) and the whole
ledger still verifies.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result
from flask import Flask

from loyalty.db import utcnow
from loyalty.extensions import db
from loyalty.imports import services as imports
from loyalty.imports.rows import ImportRejected, ImportResult, write_report
from loyalty.jobs import services as jobs
from loyalty.ledger import verify as ledger_verify
from loyalty.ledger.models import LedgerTransaction, PointLot
from loyalty.ledger.policy import add_months
from loyalty.members import lookup
from loyalty.members.models import Member
from loyalty.membership import adjustments
from loyalty.membership import services as members
from loyalty.tiers.services import tier_history
from tests.factories import ApiKeyFactory, TierFactory, auth

# After every test the whole ledger must verify.
pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")

MEMBER_COLUMNS = "external_id,email,name,birthday,status"
BALANCE_COLUMNS = "external_id,points,expires_at"


# --- helpers -------------------------------------------------------------------------------


def write_csv(tmp_path: Path, name: str, header: str, *rows: str) -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def import_members(app: Flask, path: Path, **options: Any) -> ImportResult:
    with app.app_context(), path.open(newline="", encoding="utf-8") as stream:
        return imports.import_members(db.session, stream, **options)


def import_balances(app: Flask, path: Path, **options: Any) -> ImportResult:
    with app.app_context(), path.open(newline="", encoding="utf-8") as stream:
        return imports.import_balances(db.session, stream, **options)


def rejected(result: ImportResult) -> list[tuple[int, str]]:
    return [(item.line, item.reason.split(":")[0]) for item in result.rejected]


def member_ids(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(Member.external_id).order_by(Member.external_id)))


def card(app: Flask, external_id: str, now: dt.datetime | None = None) -> members.MemberCard:
    with app.app_context():
        found = members.card(db.session, external_id, now=now)
        db.session.expunge_all()
        return found


def available(app: Flask, external_id: str) -> int:
    return card(app, external_id).available


def enroll(app: Flask, external_id: str, **fields: Any) -> None:
    with app.app_context():
        members.enroll(db.session, members.EnrollMember(**{"external_id": external_id, **fields}))


def transaction_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(LedgerTransaction.id))) or 0


def in_a_year() -> str:
    return add_months(utcnow(), 12).replace(microsecond=0).isoformat()


def cli(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=list(args))


@pytest.fixture
def three_members(app: Flask, tmp_path: Path) -> None:
    path = write_csv(tmp_path, "members.csv", "external_id", "a1", "a2", "a3")
    assert import_members(app, path).imported == 3


# --- members -------------------------------------------------------------------------------


def test_members_are_imported_with_their_fields(app, tmp_path):
    path = write_csv(
        tmp_path,
        "members.csv",
        MEMBER_COLUMNS,
        "a1,ada@example.com,Ada Lovelace,1815-12-10,active",
        "a2,,,,",
        "a3,grace@example.com,Grace Hopper,,suspended",
    )

    result = import_members(app, path)

    assert (result.imported, result.skipped, result.rejected) == (3, 0, [])
    ada, plain, grace = (card(app, external_id) for external_id in ("a1", "a2", "a3"))
    assert (ada.email, ada.name, ada.birthday, ada.status) == (
        "ada@example.com",
        "Ada Lovelace",
        dt.date(1815, 12, 10),
        "active",
    )
    assert (plain.email, plain.name, plain.birthday, plain.status) == (None, None, None, "active")
    assert grace.status == "suspended"


def test_only_the_external_id_column_is_required(app, tmp_path):
    path = write_csv(tmp_path, "members.csv", "external_id", "a1", "a2")

    assert import_members(app, path).imported == 2
    assert member_ids(app) == ["a1", "a2"]


def test_a_file_without_an_external_id_column_is_rejected(app, tmp_path):
    path = write_csv(tmp_path, "members.csv", "id,email", "a1,ada@example.com")

    with pytest.raises(ImportRejected) as refused:
        import_members(app, path, all_or_nothing=False)

    assert [(r.line, r.reason) for r in refused.value.rejected] == [
        (1, "missing columns: external_id")
    ]
    assert member_ids(app) == []


def test_imported_members_get_no_signup_points(app, client, tmp_path):
    with app.app_context():
        admin = auth(ApiKeyFactory(scopes=("admin",)))
    signup = {"name": "Welcome", "kind": "event", "points": 50, "event_type": "signup"}
    assert client.post("/v1/admin/rules", json=signup, headers=admin).status_code == 201
    enroll(app, "new_customer")
    path = write_csv(tmp_path, "members.csv", "external_id", "moved_over")

    import_members(app, path)

    assert available(app, "new_customer") == 50
    assert available(app, "moved_over") == 0
    with app.app_context():
        moved = lookup.find_member(db.session, "moved_over").id
        assert (
            db.session.scalar(
                sa.select(sa.func.count(LedgerTransaction.id)).where(
                    LedgerTransaction.member_id == moved
                )
            )
            == 0
        )


def tier_of(external_id: str) -> str | None:
    tier = members.card(db.session, external_id).progress.tier
    return tier.code if tier else None


def test_imported_members_get_the_tier_that_needs_no_points_as_enrolled_ones_do(app, tmp_path):
    with app.app_context():
        TierFactory(code="member", name="Member", rank=1, threshold=0)
        TierFactory(code="silver", name="Silver", rank=2, threshold=100)
    enroll(app, "new_customer")
    path = write_csv(tmp_path, "members.csv", "external_id", "moved_over", "also_moved")

    import_members(app, path)

    with app.app_context():
        for external_id in ("new_customer", "moved_over", "also_moved"):
            member = lookup.find_member(db.session, external_id)
            assert tier_of(external_id) == "member"
            [move] = tier_history(db.session, member.id, limit=10)
            assert (move.from_tier, move.to_tier, move.reason) == (None, "member", "qualified")


def test_without_a_tier_that_needs_no_points_imported_members_have_none(app, tmp_path):
    with app.app_context():
        TierFactory(code="silver", name="Silver", rank=1, threshold=100)
    path = write_csv(tmp_path, "members.csv", "external_id", "moved_over")

    import_members(app, path)

    with app.app_context():
        assert tier_of("moved_over") is None


def test_each_bad_member_row_is_rejected_with_its_reason(app, tmp_path):
    path = write_csv(
        tmp_path,
        "members.csv",
        MEMBER_COLUMNS,
        "ok1,,,,",
        "has space,,,,",
        "bad_email,not-an-email,,,",
        "unborn,,,2999-01-01,",
        "no_such_day,,,1990-02-30,",
        "vip,,,,platinum",
        "ok1,,,,",
        "ok2,,,,",
    )

    result = import_members(app, path, all_or_nothing=False)

    assert rejected(result) == [
        (3, "external_id"),
        (4, "email"),
        (5, "birthday"),
        (6, "birthday"),
        (7, "status"),
        (8, "external_id"),
    ]
    assert result.rejected[-1].reason == "external_id: appears twice in the file"
    assert result.imported == 2
    assert member_ids(app) == ["ok1", "ok2"]


def test_all_or_nothing_rejects_the_whole_file_for_one_bad_row(app, tmp_path):
    path = write_csv(
        tmp_path, "members.csv", MEMBER_COLUMNS, "a1,,,,", "a2,nope,,,", "a3,,,,", "a4,,,,vip"
    )

    with pytest.raises(ImportRejected) as refused:
        import_members(app, path)

    assert [(r.line, r.reason) for r in refused.value.rejected] == [
        (3, "email: not an email address"),
        (5, "status: active, suspended or closed"),
    ]
    assert member_ids(app) == []


def test_with_a_report_the_valid_rows_are_imported_and_the_rest_reported_by_line(app, tmp_path):
    path = write_csv(
        tmp_path, "members.csv", MEMBER_COLUMNS, "a1,,,,", "a2,nope,Bob,,", "a3,,,,", "a4,,,,vip"
    )
    result = import_members(app, path, all_or_nothing=False)
    report = io.StringIO()

    write_report(result.rejected, report)

    assert result.imported == 2
    assert member_ids(app) == ["a1", "a3"]
    rows = list(csv.DictReader(io.StringIO(report.getvalue())))
    assert rows == [
        {
            "line": "3",
            "reason": "email: not an email address",
            "external_id": "a2",
            "email": "nope",
            "name": "Bob",
            "birthday": "",
            "status": "",
        },
        {
            "line": "5",
            "reason": "status: active, suspended or closed",
            "external_id": "a4",
            "email": "",
            "name": "",
            "birthday": "",
            "status": "vip",
        },
    ]


def test_rerunning_a_member_import_imports_nothing_new(app, tmp_path):
    path = write_csv(tmp_path, "members.csv", "external_id,email", "a1,a@example.com", "a2,")
    import_members(app, path)

    again = import_members(app, path)

    assert (again.imported, again.skipped) == (0, 2)
    assert member_ids(app) == ["a1", "a2"]


def test_a_member_already_enrolled_is_skipped_not_changed(app, tmp_path):
    enroll(app, "a1", email="current@example.com")
    path = write_csv(tmp_path, "members.csv", "external_id,email", "a1,old@example.com", "a2,")

    result = import_members(app, path)

    assert (result.imported, result.skipped) == (1, 1)
    assert card(app, "a1").email == "current@example.com"


def test_imported_members_are_imported_in_several_batches(app, tmp_path):
    path = write_csv(tmp_path, "members.csv", "external_id", *(f"a{n}" for n in range(7)))
    told: list[int] = []

    result = import_members(app, path, batch_size=3, progress=told.append)

    assert result.imported == 7
    assert told == [3, 3, 1]
    assert len(member_ids(app)) == 7


# --- balances ------------------------------------------------------------------------------


def test_an_imported_balance_is_available_on_the_card(app, tmp_path, three_members):
    path = write_csv(tmp_path, "balances.csv", "external_id,points", "a1,1200", "a2,75")

    result = import_balances(app, path)

    assert (result.imported, result.skipped, result.rejected) == (2, 0, [])
    assert (available(app, "a1"), available(app, "a2"), available(app, "a3")) == (1200, 75, 0)
    found = card(app, "a1")
    assert (found.pending, found.held) == (0, 0)


def test_an_imported_balance_is_one_import_transaction_from_the_program(
    app, tmp_path, three_members
):
    import_balances(app, write_csv(tmp_path, "balances.csv", "external_id,points", "a1,1200"))

    with app.app_context():
        [txn] = db.session.scalars(sa.select(LedgerTransaction)).all()
        entries = sorted((e.account, e.amount) for e in txn.entries)
    assert txn.kind == "import"
    assert entries == [("available", 1200), ("issued", -1200)]


def test_an_imported_balance_adds_to_points_the_member_already_has(app, tmp_path):
    enroll(app, "a1")
    with app.app_context():
        adjustments.adjust(db.session, "a1", 100, "goodwill", "ops")

    import_balances(app, write_csv(tmp_path, "balances.csv", "external_id,points", "a1,50"))

    assert available(app, "a1") == 150


def test_the_expires_at_column_is_honoured(app, tmp_path, three_members):
    expires = (utcnow() + dt.timedelta(days=10)).replace(microsecond=0)
    path = write_csv(
        tmp_path, "balances.csv", BALANCE_COLUMNS, f"a1,300,{expires.isoformat()}", "a2,40,"
    )

    import_balances(app, path)

    soon = card(app, "a1").expiring_soon
    assert [(lot.remaining, lot.expires_at) for lot in soon] == [(300, expires)]
    assert card(app, "a1", now=expires + dt.timedelta(seconds=1)).available == 0


def test_without_expires_at_imported_points_expire_under_the_program_policy(
    app, tmp_path, three_members
):
    before = utcnow()
    import_balances(app, write_csv(tmp_path, "balances.csv", "external_id,points", "a1,300"))

    with app.app_context():
        expires_at = db.session.scalar(sa.select(PointLot.expires_at))
    assert add_months(before, 12) <= expires_at <= add_months(utcnow(), 12)


def test_an_imported_balance_expires_through_the_job_like_any_points(app, tmp_path, three_members):
    expires = (utcnow() + dt.timedelta(days=3)).replace(microsecond=0)
    import_balances(app, write_csv(tmp_path, "b.csv", BALANCE_COLUMNS, f"a1,300,{expires}"))

    with app.app_context():
        summary = jobs.settle_due(db.session, now=expires + dt.timedelta(minutes=1))

    assert summary.members_settled == 1
    with app.app_context():
        kinds = list(db.session.scalars(sa.select(LedgerTransaction.kind)))
    assert sorted(kinds) == ["expire", "import"]


def test_a_balance_for_an_unknown_member_is_rejected(app, tmp_path, three_members):
    path = write_csv(tmp_path, "balances.csv", BALANCE_COLUMNS, "a1,100,", "ghost,100,")

    result = import_balances(app, path, all_or_nothing=False)

    assert [(r.line, r.reason) for r in result.rejected] == [(3, "external_id: no such member")]
    assert result.imported == 1
    assert available(app, "a1") == 100


def test_an_unknown_member_is_reported_with_its_row_as_written(app, tmp_path, three_members):
    path = write_csv(tmp_path, "balances.csv", BALANCE_COLUMNS, "ghost,100,")
    result = import_balances(app, path, all_or_nothing=False)
    report = io.StringIO()

    write_report(result.rejected, report)

    assert list(csv.DictReader(io.StringIO(report.getvalue()))) == [
        {
            "line": "2",
            "reason": "external_id: no such member",
            "external_id": "ghost",
            "points": "100",
            "expires_at": "",
        }
    ]


def test_each_bad_balance_row_is_rejected_with_its_reason(app, tmp_path, three_members):
    path = write_csv(
        tmp_path,
        "balances.csv",
        BALANCE_COLUMNS,
        "a1,-5,",
        "a1,1.5,",
        "a1,lots,",
        "a1,,",
        "a1,99999999999,",
        "a1,2000000000,",
        "a1,10,2030-01-01T00:00:00",
        "a1,10,2001-01-01T00:00:00+00:00",
        "a1,10,next week",
        "a2,10,",
        "a2,20,",
    )

    result = import_balances(app, path, all_or_nothing=False)

    assert rejected(result) == [
        (2, "points"),
        (3, "points"),
        (4, "points"),
        (5, "points"),
        (6, "points"),
        (7, "points"),
        (8, "expires_at"),
        (9, "expires_at"),
        (10, "expires_at"),
        (12, "external_id"),
    ]
    assert result.imported == 1
    assert (available(app, "a1"), available(app, "a2")) == (0, 10)


def test_all_or_nothing_writes_no_balance_when_one_row_is_bad(app, tmp_path, three_members):
    path = write_csv(tmp_path, "balances.csv", BALANCE_COLUMNS, "a1,100,", "ghost,5,", "a2,7,")

    with pytest.raises(ImportRejected) as refused:
        import_balances(app, path)

    assert [(r.line, r.reason) for r in refused.value.rejected] == [
        (3, "external_id: no such member")
    ]
    assert transaction_count(app) == 0
    assert (available(app, "a1"), available(app, "a2")) == (0, 0)


def test_rerunning_a_balance_import_adds_nothing(app, tmp_path, three_members):
    path = write_csv(tmp_path, "balances.csv", "external_id,points", "a1,100", "a2,200")
    import_balances(app, path)

    again = import_balances(app, path)

    assert (again.imported, again.skipped) == (0, 2)
    assert (available(app, "a1"), available(app, "a2")) == (100, 200)
    assert transaction_count(app) == 2


def test_a_balance_changed_in_the_file_is_still_imported_only_once(app, tmp_path, three_members):
    import_balances(app, write_csv(tmp_path, "first.csv", "external_id,points", "a1,100"))

    again = import_balances(app, write_csv(tmp_path, "fixed.csv", "external_id,points", "a1,150"))

    assert again.imported == 0
    assert available(app, "a1") == 100


def test_a_zero_balance_is_skipped(app, tmp_path, three_members):
    result = import_balances(app, write_csv(tmp_path, "b.csv", "external_id,points", "a1,0"))

    assert (result.imported, result.skipped) == (0, 1)
    assert transaction_count(app) == 0


# --- the command ---------------------------------------------------------------------------


def test_the_cli_imports_members_then_balances(app, tmp_path):
    members_csv = write_csv(tmp_path, "members.csv", "external_id,email", "a1,a@example.com", "a2,")
    balances_csv = write_csv(tmp_path, "balances.csv", "external_id,points", "a1,500", "a2,0")

    first = cli(app, "import", "members", str(members_csv))
    second = cli(app, "import", "balances", str(balances_csv))

    assert first.exit_code == 0, first.output
    assert first.stdout == "imported 2 members, skipped 0 (already there), rejected 0\n"
    assert second.exit_code == 0, second.output
    assert second.stdout == (
        "imported 1 balances, skipped 1 (already there or zero points), rejected 0\n"
    )
    assert available(app, "a1") == 500


def test_the_cli_rerun_reports_everything_skipped(app, tmp_path):
    path = write_csv(tmp_path, "members.csv", "external_id", "a1", "a2")
    cli(app, "import", "members", str(path))

    result = cli(app, "import", "members", str(path))

    assert result.stdout == "imported 0 members, skipped 2 (already there), rejected 0\n"


def test_the_cli_refuses_a_file_with_a_bad_row_and_names_it(app, tmp_path):
    path = write_csv(tmp_path, "members.csv", "external_id,email", "a1,", "a2,nope")

    result = cli(app, "import", "members", str(path))

    assert result.exit_code == 1
    assert "line 3: email: not an email address" in result.stderr
    assert "1 rows rejected; nothing imported" in result.stderr
    assert member_ids(app) == []


def test_the_cli_with_a_report_imports_the_valid_rows_and_writes_the_rest(app, tmp_path):
    members_csv = write_csv(tmp_path, "members.csv", "external_id", "a1")
    cli(app, "import", "members", str(members_csv))
    path = write_csv(tmp_path, "balances.csv", "external_id,points", "a1,10", "ghost,20")
    report = tmp_path / "rejected.csv"

    result = cli(app, "import", "balances", str(path), "--report", str(report))

    assert result.exit_code == 0, result.output
    assert result.stdout.endswith(f"rejected 1 (see {report})\n")
    rows = list(csv.DictReader(io.StringIO(report.read_text(encoding="utf-8"))))
    assert [(row["line"], row["reason"], row["external_id"]) for row in rows] == [
        ("3", "external_id: no such member", "ghost")
    ]
    assert available(app, "a1") == 10


def test_the_cli_accepts_a_file_saved_with_a_byte_order_mark(app, tmp_path):
    path = tmp_path / "excel.csv"
    path.write_text("external_id,email\na1,a@example.com\n", encoding="utf-8-sig")

    result = cli(app, "import", "members", str(path))

    assert result.exit_code == 0, result.output
    assert member_ids(app) == ["a1"]


def test_the_cli_refuses_a_missing_file(app, tmp_path):
    result = cli(app, "import", "members", str(tmp_path / "nowhere.csv"))

    assert result.exit_code == 2
    assert "does not exist" in result.stderr


# --- a timed smoke test --------------------------------------------------------------------

SMOKE_ROWS = 5000


def test_five_thousand_members_and_balances_import_and_verify(app, tmp_path):
    expires = in_a_year()
    members_csv = write_csv(
        tmp_path,
        "members.csv",
        MEMBER_COLUMNS,
        *(f"m{n:05d},m{n}@example.com,Member {n},1990-01-01,active" for n in range(SMOKE_ROWS)),
    )
    balances_csv = write_csv(
        tmp_path,
        "balances.csv",
        BALANCE_COLUMNS,
        *(f"m{n:05d},{n % 1000 + 1},{expires if n % 2 else ''}" for n in range(SMOKE_ROWS)),
    )
    started = time.perf_counter()

    members_result = import_members(app, members_csv)
    balances_result = import_balances(app, balances_csv)

    elapsed = time.perf_counter() - started
    print(f"imported {SMOKE_ROWS} members and balances in {elapsed:.1f} s")  # noqa: T201
    assert members_result.imported == balances_result.imported == SMOKE_ROWS
    assert transaction_count(app) == SMOKE_ROWS
    with app.app_context():
        report = ledger_verify.verify(db.session)
    assert report.ok, report.problems
    assert report.members == SMOKE_ROWS
    assert available(app, "m04999") == 4999 % 1000 + 1


# --- a file imports entirely or not at all, and never with a traceback ---------------------


def test_a_nul_in_the_last_row_of_a_large_file_imports_nothing(app, tmp_path):
    """The last row sits in the second batch of writes: the whole file is refused first."""
    rows = [f"m{n},,Member {n},," for n in range(6000)] + ["m6000,,Nul\x00Name,,"]
    path = write_csv(tmp_path, "members.csv", MEMBER_COLUMNS, *rows)

    result = cli(app, "import", "members", str(path))

    assert result.exit_code == 1
    assert "line 6002: name: contains NUL" in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert member_ids(app) == []


def test_an_unclosed_quote_is_a_line_numbered_error_not_swallowed_rows(app, tmp_path):
    path = write_csv(tmp_path, "members.csv", MEMBER_COLUMNS, 'a1,,"Ada,,', "a2,,,,", 'a3,,Bob",,')

    with pytest.raises(ImportRejected) as refused:
        import_members(app, path, all_or_nothing=False)

    assert refused.value.whole_file
    assert [(item.line, item.reason) for item in refused.value.rejected] == [
        (4, "a quoted field spans lines (an unclosed quote?)")
    ]
    assert member_ids(app) == []


def test_a_quote_left_open_to_the_end_is_malformed_csv(app, tmp_path):
    path = write_csv(tmp_path, "members.csv", MEMBER_COLUMNS, "a1,,,,", 'a2,,"Grace,,')

    with pytest.raises(ImportRejected) as refused:
        import_members(app, path)

    assert refused.value.rejected[0].reason.startswith("malformed CSV")
    assert member_ids(app) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe\x00\x01" * 250_000, "is not UTF-8 text"),
        ("external_id,name\na1," + "x" * 200_000 + "\n", "is not CSV it can read"),
    ],
    ids=["binary", "huge-field"],
)
def test_a_file_that_is_not_csv_text_is_refused_without_a_traceback(
    app, tmp_path, content, message
):
    path = tmp_path / "members.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")

    result = cli(app, "import", "members", str(path))

    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert member_ids(app) == []


def test_a_name_longer_than_the_api_allows_is_rejected_not_cut(app, tmp_path):
    path = write_csv(
        tmp_path, "members.csv", MEMBER_COLUMNS, "a1,,Ada,,", "a2,," + "x" * 201 + ",,"
    )

    result = import_members(app, path, all_or_nothing=False)

    assert rejected(result) == [(3, "name")]
    assert member_ids(app) == ["a1"]


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_an_expiry_out_of_range_in_utc_is_rejected(app, tmp_path, three_members, moment):
    path = write_csv(tmp_path, "balances.csv", BALANCE_COLUMNS, f"a1,100,{moment}", "a2,50,")

    result = import_balances(app, path, all_or_nothing=False)

    assert rejected(result) == [(2, "expires_at")]
    assert available(app, "a2") == 50


def test_a_failure_half_way_through_the_writes_leaves_nothing(app, tmp_path, monkeypatch):
    path = write_csv(tmp_path, "members.csv", "external_id", "a1", "a2", "a3")
    real_insert = imports._insert_ignore
    calls: list[int] = []

    def fail_in_the_second_batch(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 3:  # a batch inserts members, then their balance rows
            raise RuntimeError("the database went away")
        real_insert(*args, **kwargs)

    monkeypatch.setattr(imports, "_insert_ignore", fail_in_the_second_batch)

    with pytest.raises(RuntimeError):
        import_members(app, path, batch_size=2)

    assert member_ids(app) == []
