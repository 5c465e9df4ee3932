"""`loyalty import orders`: years of past orders from another system, as history.

Columns `external_id,order_id,placed_at,amount,currency` (amount in minor units, in the
program's currency). Imported orders record no points unless `--earn`; every row is held to
the API's bounds, the file imports entirely or not at all (or, with a report, the valid rows
and the rest reported by line), and a re-run adds nothing. The whole ledger verifies after
every test.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from loyalty.db import utcnow
from loyalty.extensions import db
from loyalty.imports import orders as order_import
from loyalty.imports.rows import ImportRejected, ImportResult, Rejected
from loyalty.ledger.models import LedgerTransaction
from loyalty.members.models import Member
from loyalty.orders import services as orders
from loyalty.orders.models import Order
from tests.factories import ApiKeyFactory, auth
from tests.helpers import created, problem
from tests.integration.test_imports import available, cli, enroll, transaction_count, write_csv

pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")

COLUMNS = "external_id,order_id,placed_at,amount,currency"
LONG_AGO = "2021-03-04T10:20:30+01:00"


def import_orders(app: Flask, path: Path, **options: Any) -> ImportResult:
    with app.app_context(), path.open(newline="", encoding="utf-8") as stream:
        return order_import.import_orders(db.session, stream, **options)


def import_text(app: Flask, text: str, **options: Any) -> ImportResult:
    with app.app_context():
        return order_import.import_orders(db.session, io.StringIO(text), **options)


def order_ids(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(Order.order_id).order_by(Order.order_id)))


def reasons(rejected: list[Rejected]) -> list[tuple[int, str]]:
    return [(item.line, item.reason.split(":")[0]) for item in rejected]


@pytest.fixture
def shoppers(app: Flask) -> None:
    for external_id in ("a1", "a2"):
        enroll(app, external_id)


@pytest.fixture
def admin(app: Flask) -> dict[str, str]:
    with app.app_context():
        return auth(ApiKeyFactory(scopes=("admin",)))


@pytest.fixture
def spend_rule(client, admin) -> None:
    rule = {"name": "Base", "kind": "spend", "points": 1, "per_amount": 100}
    created(client.post("/v1/admin/rules", json=rule, headers=admin))


def test_imported_orders_are_history_without_points(app, tmp_path, shoppers, spend_rule):
    path = write_csv(
        tmp_path,
        "orders.csv",
        COLUMNS,
        f"a1,ord-1,{LONG_AGO},4999,USD",
        "a1,ord-2,2024-12-24T18:00:00Z,0,USD",
        "a2,ord-3,2019-01-01T00:00:00+00:00,120000,USD",
    )

    result = import_orders(app, path)

    assert (result.imported, result.skipped, result.rejected) == (3, 0, [])
    with app.app_context():
        first = orders.find_order(db.session, "ord-1")
    assert (first.external_id, first.total, first.currency) == ("a1", 4999, "USD")
    assert first.placed_at == dt.datetime(2021, 3, 4, 9, 20, 30, tzinfo=dt.UTC)
    assert (first.points_earned, first.breakdown, first.lines) == (0, (), ())
    assert transaction_count(app) == 0
    assert available(app, "a1") == 0


def test_an_imported_order_is_read_and_refunded_through_the_api(app, client, tmp_path, shoppers):
    with app.app_context():
        checkout = auth(ApiKeyFactory(scopes=("checkout",)))
    import_orders(app, write_csv(tmp_path, "o.csv", COLUMNS, f"a1,ord-1,{LONG_AGO},4999,USD"))

    shown = client.get("/v1/orders/ord-1", headers=checkout).json
    back = client.post(
        "/v1/orders/ord-1/refunds", json={"refund_id": "r1", "amount": 999}, headers=checkout
    )
    too_much = client.post(
        "/v1/orders/ord-1/refunds", json={"refund_id": "r2", "amount": 4001}, headers=checkout
    )

    assert (shown["status"], shown["points_earned"], shown["total"]["amount"]) == ("none", 0, 4999)
    assert (created(back)["amount"]["amount"], back.json["points_reversed"]) == (999, 0)
    problem(too_much, 422, "refund_exceeds_order")


def test_an_api_order_reusing_an_imported_order_id_is_an_order_conflict(
    app, client, tmp_path, shoppers
):
    with app.app_context():
        checkout = auth(ApiKeyFactory(scopes=("checkout",)))
    import_orders(app, write_csv(tmp_path, "o.csv", COLUMNS, f"a1,ord-1,{LONG_AGO},4999,USD"))
    body = {
        "order_id": "ord-1",
        "member_id": "a1",
        "currency": "USD",
        "lines": [{"sku": "tee", "quantity": 1, "unit_price": 4999}],
    }

    problem(client.post("/v1/orders", json=body, headers=checkout), 409, "order_conflict")


def test_orders_of_members_who_are_not_active_are_history_too(app, client, tmp_path, admin):
    enroll(app, "gone")
    client.patch("/v1/admin/members/gone", json={"status": "closed"}, headers=admin)

    result = import_text(app, f"{COLUMNS}\ngone,ord-1,{LONG_AGO},100,USD\n")

    assert result.imported == 1


def test_one_bad_row_at_the_end_imports_nothing(app, tmp_path, shoppers):
    rows = [f"a{n % 2 + 1},ord-{n},{LONG_AGO},{n},USD" for n in range(12000)]
    path = write_csv(tmp_path, "o.csv", COLUMNS, *rows, f"a1,ord-last,{LONG_AGO},-1,USD")

    with pytest.raises(ImportRejected) as refused:
        import_orders(app, path)

    assert [(r.line, r.reason) for r in refused.value.rejected] == [
        (12002, "amount: a whole number of minor units, 0 or more")
    ]
    assert order_ids(app) == []


def test_an_unknown_member_at_the_end_imports_nothing(app, tmp_path, shoppers):
    path = write_csv(
        tmp_path, "o.csv", COLUMNS, f"a1,ord-1,{LONG_AGO},1,USD", f"ghost,ord-2,{LONG_AGO},1,USD"
    )

    with pytest.raises(ImportRejected) as refused:
        import_orders(app, path)

    assert [(r.line, r.reason, r.row["external_id"]) for r in refused.value.rejected] == [
        (3, "external_id: no such member", "ghost")
    ]
    assert order_ids(app) == []


def test_each_bad_row_is_rejected_with_its_line_and_reason(app, tmp_path, shoppers):
    path = write_csv(
        tmp_path,
        "o.csv",
        COLUMNS,
        f"a1,ok-1,{LONG_AGO},100,USD",
        f"a1,has space,{LONG_AGO},100,USD",
        f"a1,quote,{LONG_AGO},100,USD",
        f"a1,nul\x00,{LONG_AGO},100,USD",
        f"no body,ok-2,{LONG_AGO},100,USD",
        "a1,ok-3,2021-03-04T10:20:30,100,USD",
        "a1,ok-4,0001-01-01T00:00:00+14:00,100,USD",
        "a1,ok-5,9999-12-31T23:59:59-14:00,100,USD",
        "a1,ok-6,2021-02-30T00:00:00+00:00,100,USD",
        "a1,ok-7,,100,USD",
        f"a1,ok-8,{(utcnow() + dt.timedelta(hours=1)).isoformat()},100,USD",
        f"a1,ok-9,{LONG_AGO},12.50,USD",
        f"a1,ok-10,{LONG_AGO},1000000000001,USD",
        f"a1,ok-11,{LONG_AGO},{'9' * 5000},USD",
        f"a1,ok-12,{LONG_AGO},100,EUR",
        f"a1,ok-13,{LONG_AGO},100,usd",
        f"ghost,ok-14,{LONG_AGO},100,USD",
        f"a2,ok-1,{LONG_AGO},100,USD",
        f"a2,ok-15,{LONG_AGO},1000000000000,USD",
    )

    result = import_orders(app, path, all_or_nothing=False)

    assert reasons(result.rejected) == [
        (3, "order_id"),
        (4, "order_id"),
        (5, "order_id"),
        (6, "external_id"),
        (7, "placed_at"),
        (8, "placed_at"),
        (9, "placed_at"),
        (10, "placed_at"),
        (11, "placed_at"),
        (12, "placed_at"),
        (13, "amount"),
        (14, "amount"),
        (15, "amount"),
        (16, "currency"),
        (17, "currency"),
        (18, "external_id"),
        (19, "order_id"),
    ]
    assert result.rejected[-1].reason == "order_id: appears twice in the file"
    assert result.rejected[-2].reason == "external_id: no such member"
    assert (result.imported, result.skipped) == (2, 0)
    assert order_ids(app) == ["ok-1", "ok-15"]


def test_a_lone_surrogate_is_a_rejected_row_not_an_error(app, shoppers):
    text = f"{COLUMNS}\na1,ord\ud800,{LONG_AGO},1,USD\na\udfff,ord-2,{LONG_AGO},1,USD\n"

    result = import_text(app, text, all_or_nothing=False)

    assert reasons(result.rejected) == [(2, "order_id"), (3, "external_id")]


def test_a_missing_column_refuses_the_file(app, tmp_path, shoppers):
    path = write_csv(tmp_path, "o.csv", "external_id,order_id,amount", "a1,ord-1,100")

    with pytest.raises(ImportRejected) as refused:
        import_orders(app, path, all_or_nothing=False)

    assert refused.value.whole_file
    assert refused.value.rejected[0].reason == "missing columns: currency, placed_at"


def test_rerunning_the_same_file_adds_nothing(app, tmp_path, shoppers):
    path = write_csv(
        tmp_path, "o.csv", COLUMNS, f"a1,ord-1,{LONG_AGO},100,USD", f"a2,ord-2,{LONG_AGO},7,USD"
    )
    import_orders(app, path)

    again = import_orders(app, path)

    assert (again.imported, again.skipped, again.rejected) == (0, 2, [])
    assert order_ids(app) == ["ord-1", "ord-2"]


def test_a_file_that_records_an_order_differently_is_rejected(app, tmp_path, shoppers):
    import_orders(app, write_csv(tmp_path, "o.csv", COLUMNS, f"a1,ord-1,{LONG_AGO},100,USD"))
    changed = write_csv(
        tmp_path,
        "changed.csv",
        COLUMNS,
        f"a1,ord-2,{LONG_AGO},5,USD",
        f"a1,ord-1,{LONG_AGO},101,USD",
        f"a2,ord-1,{LONG_AGO},100,USD",
        "a1,ord-1,2021-03-04T10:20:31+01:00,100,USD",
    )

    result = import_orders(app, changed, all_or_nothing=False)

    assert reasons(result.rejected) == [(3, "order_id"), (4, "order_id"), (5, "order_id")]
    assert result.rejected[0].reason == (
        "order_id: already recorded for another member, amount or time"
    )
    with app.app_context():
        assert orders.find_order(db.session, "ord-1").total == 100


def test_an_order_already_placed_through_the_api_the_same_way_is_skipped(app, tmp_path, shoppers):
    with app.app_context():
        placed, _ = orders.place_order(
            db.session,
            orders.PlaceOrder(
                order_id="ord-1",
                external_id="a1",
                currency="USD",
                lines=(orders.CartLine("tee", None, 1, 100),),
                placed_at=dt.datetime.fromisoformat(LONG_AGO),
            ),
        )
    assert placed.points_earned == 0  # before a1 was enrolled

    result = import_text(app, f"{COLUMNS}\na1,ord-1,{LONG_AGO},100,USD\n")

    assert (result.imported, result.skipped) == (0, 1)


def test_with_earn_orders_earn_as_api_orders_placed_then(app, tmp_path, shoppers, spend_rule):
    recent = (utcnow() - dt.timedelta(days=30)).replace(microsecond=0).isoformat()
    path = write_csv(
        tmp_path,
        "o.csv",
        COLUMNS,
        f"a1,ord-1,{recent},4999,USD",
        f"a2,ord-2,{LONG_AGO},10000,USD",
    )

    result = import_orders(app, path, earn=True)

    assert result.imported == 2
    with app.app_context():
        first = orders.find_order(db.session, "ord-1")
        old = orders.find_order(db.session, "ord-2")
    assert (first.points_earned, first.lines[0]["sku"]) == (49, order_import.IMPORTED_SKU)
    assert old.points_earned == 100
    # Earned 30 days ago: available; earned in 2021: expired since (12 months, fixed).
    assert (available(app, "a1"), available(app, "a2")) == (49, 0)
    again = import_orders(app, path, earn=True)
    assert (again.imported, again.skipped) == (0, 2)


def test_with_earn_a_member_who_is_not_active_is_rejected(app, client, tmp_path, admin, shoppers):
    client.patch("/v1/admin/members/a2", json={"status": "suspended"}, headers=admin)
    path = write_csv(
        tmp_path, "o.csv", COLUMNS, f"a1,ord-1,{LONG_AGO},100,USD", f"a2,ord-2,{LONG_AGO},1,USD"
    )

    with pytest.raises(ImportRejected) as refused:
        import_orders(app, path, earn=True)

    assert reasons(refused.value.rejected) == [(3, "external_id")]
    assert order_ids(app) == []


def test_with_earn_a_refusal_of_the_checkout_is_reported_by_line(
    app, client, tmp_path, admin, shoppers
):
    rule = {"name": "Huge", "kind": "spend", "points": 1000, "per_amount": 1}
    created(client.post("/v1/admin/rules", json=rule, headers=admin))
    path = write_csv(
        tmp_path,
        "o.csv",
        COLUMNS,
        f"a1,ord-1,{LONG_AGO},100,USD",
        f"a1,ord-2,{LONG_AGO},1000000000,USD",
    )

    result = import_orders(app, path, earn=True, all_or_nothing=False)

    assert [(r.line, r.reason.split(":")[0]) for r in result.rejected] == [(3, "validation_error")]
    assert (result.imported, result.skipped) == (1, 0)
    assert order_ids(app) == ["ord-1"]
    with pytest.raises(ImportRejected):
        import_orders(
            app,
            write_csv(tmp_path, "again.csv", COLUMNS, f"a1,ord-3,{LONG_AGO},1000000000,USD"),
            earn=True,
        )
    assert order_ids(app) == ["ord-1"]


def test_the_order_of_rows_inserted_follows_placed_at(app, shoppers):
    text = f"{COLUMNS}\na1,late,2022-01-01T00:00:00Z,1,USD\na1,early,2020-01-01T00:00:00Z,1,USD\n"

    import_text(app, text)

    with app.app_context():
        ids = list(db.session.scalars(sa.select(Order.order_id).order_by(Order.id)))
    assert ids == ["early", "late"]


# --- the command ---------------------------------------------------------------------------


def test_the_cli_imports_orders(app, tmp_path, shoppers):
    path = write_csv(tmp_path, "o.csv", COLUMNS, f"a1,ord-1,{LONG_AGO},100,USD")

    first = cli(app, "import", "orders", str(path))
    again = cli(app, "import", "orders", str(path))

    assert first.exit_code == 0, first.output
    assert first.stdout == "imported 1 orders, skipped 0 (already there), rejected 0\n"
    assert again.stdout == "imported 0 orders, skipped 1 (already there), rejected 0\n"


def test_the_cli_names_bad_rows_by_line_and_imports_nothing(app, tmp_path, shoppers):
    path = write_csv(
        tmp_path,
        "o.csv",
        COLUMNS,
        f"a1,ord-1,{LONG_AGO},100,USD",
        f"ghost,ord-2,{LONG_AGO},100,USD",
        "a1,ord-3,9999-12-31T23:59:59-14:00,100,USD",
    )

    result = cli(app, "import", "orders", str(path))

    assert result.exit_code == 1
    assert "line 3: external_id: no such member" in result.stderr
    assert "line 4: placed_at: out of range" in result.stderr
    assert "2 rows rejected; nothing imported" in result.stderr
    assert "Traceback" not in result.output
    assert order_ids(app) == []


def test_the_cli_with_a_report_imports_the_valid_rows(app, tmp_path, shoppers):
    path = write_csv(
        tmp_path, "o.csv", COLUMNS, f"a1,ord-1,{LONG_AGO},100,USD", f"a1,ord-2,{LONG_AGO},1,EUR"
    )
    report = tmp_path / "rejected.csv"

    result = cli(app, "import", "orders", str(path), "--report", str(report))

    assert result.exit_code == 0, result.output
    assert result.stdout.endswith(f"rejected 1 (see {report})\n")
    assert report.read_text(encoding="utf-8").splitlines() == [
        "line,reason,amount,currency,external_id,order_id,placed_at",
        f"3,currency: the program runs in USD,1,EUR,a1,ord-2,{LONG_AGO}",
    ]
    assert order_ids(app) == ["ord-1"]


def test_the_cli_with_earn_earns(app, tmp_path, shoppers, spend_rule):
    recent = (utcnow() - dt.timedelta(days=30)).isoformat()
    path = write_csv(tmp_path, "o.csv", COLUMNS, f"a1,ord-1,{recent},2500,USD")

    result = cli(app, "import", "orders", str(path), "--earn")

    assert result.exit_code == 0, result.output
    assert available(app, "a1") == 25


@pytest.mark.parametrize(
    "content",
    [b"external_id,order_id\n\xed\xa0\x80,1\n", b"\x00\xff" * 1000],
    ids=["encoded-surrogate", "binary"],
)
def test_the_cli_refuses_a_file_that_is_not_text_without_a_traceback(
    app, tmp_path, shoppers, content
):
    path = tmp_path / "o.csv"
    path.write_bytes(content)

    result = cli(app, "import", "orders", str(path))

    assert result.exit_code == 1
    assert "is not UTF-8 text; nothing imported" in result.stderr
    assert "Traceback" not in result.output
    assert order_ids(app) == []


def test_a_member_import_keeps_working_beside_orders(app, tmp_path):
    """Members imported, then their history: the usual order of a move."""
    members_csv = write_csv(tmp_path, "m.csv", "external_id", "a1", "a2")
    orders_csv = write_csv(tmp_path, "o.csv", COLUMNS, f"a2,ord-1,{LONG_AGO},100,USD")

    assert cli(app, "import", "members", str(members_csv)).exit_code == 0
    assert cli(app, "import", "orders", str(orders_csv)).exit_code == 0

    with app.app_context():
        member_id = db.session.scalar(sa.select(Member.id).where(Member.external_id == "a2"))
        assert db.session.scalar(sa.select(Order.member_id)) == member_id
        assert db.session.scalar(sa.select(sa.func.count(LedgerTransaction.id))) == 0


def test_the_cli_says_the_database_went_away_without_a_traceback(
    app, tmp_path, shoppers, monkeypatch
):
    def lost(*_: Any) -> int:
        raise sa.exc.OperationalError("INSERT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(order_import, "_insert_history", lost)
    path = write_csv(tmp_path, "o.csv", COLUMNS, f"a1,ord-1,{LONG_AGO},100,USD")

    result = cli(app, "import", "orders", str(path))

    assert result.exit_code == 1
    assert "server closed the connection; nothing imported" in result.stderr
    assert "Traceback" not in result.output
    assert order_ids(app) == []
