"""The single-member checker (tests/statements.py) and the tables' classification
(tests/sharding.py): the checker refuses statements that reach several members, and the
classification covers the schema and matches docs/scaling.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

import loyalty.api.blueprints  # noqa: F401  (imports every model, so the metadata is whole)
from loyalty.extensions import db
from tests.sharding import DISTRIBUTED, LOCAL, REFERENCE, classified
from tests.statements import Pin, check

DOC = Path(__file__).resolve().parents[2] / "docs" / "scaling.md"
KEYS = {
    "idempotency_keys": [frozenset({"id"}), frozenset({"api_key_id", "key"})],
    "rule_budget_usage": [frozenset({"id"}), frozenset({"rule_id", "period", "period_start"})],
}


def violations(sql: str, params=None, dialect: str = "postgresql") -> list[str]:
    return check(sql, params or {}, dialect, KEYS).violations


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        # Expiring points across the program: every member's lots.
        ("SELECT point_lots.id FROM point_lots WHERE point_lots.expires_at < %(now)s", {"now": 1}),
        ("UPDATE member_balances SET held = 0", {}),
        # Two members, however written.
        (
            "SELECT * FROM orders WHERE orders.member_id = %(a)s OR orders.member_id = %(b)s",
            {"a": 1, "b": 2},
        ),
        ("SELECT * FROM orders WHERE orders.member_id IN (%(a)s, %(b)s)", {"a": 1, "b": 2}),
        ("SELECT * FROM orders WHERE NOT (orders.member_id = %(a)s)", {"a": 1}),
        ("SELECT * FROM orders WHERE orders.member_id <> %(a)s", {"a": 1}),
        # A column that is neither the member nor a routed key (not unique).
        ("SELECT * FROM orders WHERE orders.currency = %(c)s", {"c": "USD"}),
        # Joined on the transaction, not the member: the entries are not pinned.
        (
            "SELECT ledger_entries.amount FROM ledger_entries JOIN ledger_transactions"
            " ON ledger_transactions.id = ledger_entries.transaction_id"
            " WHERE ledger_transactions.member_id = %(m)s",
            {"m": 1},
        ),
        # A subquery of its own under the same name as the pinned one.
        (
            "SELECT point_lots.id FROM point_lots WHERE point_lots.member_id = %(m)s AND EXISTS"
            " (SELECT 1 FROM point_lots WHERE point_lots.expires_at < %(now)s)",
            {"m": 1, "now": 2},
        ),
        # A member's group needs both sides on the same member.
        (
            "SELECT * FROM members WHERE members.id = %(a)s OR members.merged_into_id = %(b)s",
            {"a": 1, "b": 2},
        ),
        (
            "INSERT INTO ledger_entries (transaction_id, amount) VALUES (%(t)s, %(a)s)",
            {"t": 1, "a": 2},
        ),
        ("INSERT INTO ledger_entries (member_id) SELECT members.id FROM members", {}),
        # Not one row of a local table a hot path may touch.
        ("UPDATE rule_budget_usage SET used = 0 WHERE rule_budget_usage.rule_id = %(r)s", {"r": 1}),
        ("SELECT * FROM idempotency_keys WHERE idempotency_keys.key = %(k)s", {"k": "x"}),
        # Tables a hot path must not touch, write or know.
        ("INSERT INTO audit_log (actor) VALUES (%(a)s)", {"a": "x"}),
        ("UPDATE tiers SET threshold = 0 WHERE tiers.id = %(t)s", {"t": 1}),
        ("SELECT * FROM unheard_of WHERE unheard_of.member_id = %(m)s", {"m": 1}),
        ("SELEC nonsense", {}),
    ],
)
def test_a_statement_reaching_beyond_one_member_is_refused(sql, params):
    assert violations(sql, params)


def test_a_cross_member_scan_is_named_for_its_table():
    sql = "SELECT point_lots.id FROM point_lots WHERE point_lots.expires_at < %(now)s"
    assert violations(sql, {"now": 1}) == ["point_lots: not constrained to one member"]


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("SELECT * FROM point_lots WHERE point_lots.member_id = %(m)s::BIGINT", {"m": 1}),
        (
            "SELECT * FROM point_lots AS l WHERE l.member_id IN (%(m)s) AND l.remaining > 0",
            {"m": 1},
        ),
        (
            "SELECT * FROM members JOIN member_balances ON member_balances.member_id = members.id"
            " WHERE members.external_id = %(e)s",
            {"e": "c1"},
        ),
        (
            "SELECT ledger_transactions.qualifying FROM ledger_transactions WHERE"
            " ledger_transactions.member_id IN (SELECT members.id FROM members WHERE"
            " members.id = %(a)s OR members.merged_into_id = %(a)s)",
            {"a": 1},
        ),
        (
            "SELECT * FROM rule_awards JOIN rule_budget_usage ON rule_budget_usage.id ="
            " rule_awards.budget_usage_id WHERE rule_awards.member_id = %(m)s",
            {"m": 1},
        ),
        (
            "SELECT * FROM redemption_allocations"
            " WHERE %(r)s = redemption_allocations.redemption_id",
            {"r": 1},
        ),
        (
            "UPDATE idempotency_keys SET response_status = 201 WHERE idempotency_keys.id = %(i)s",
            {"i": 1},
        ),
        ("SELECT * FROM tiers ORDER BY tiers.rank", {}),
    ],
)
def test_a_statement_on_one_members_rows_passes(sql, params):
    assert violations(sql, params) == []


def test_every_row_of_an_executemany_must_carry_the_member():
    sql = "INSERT INTO ledger_entries (transaction_id, member_id, amount) VALUES (?, ?, ?)"
    passed = check(sql, [(1, 7, 5), (1, 7, -5)], "sqlite", KEYS)
    assert passed.violations == []
    assert passed.pins == [Pin("ledger_entries", "member", "member_id", 7)] * 2
    assert check(sql, [(1, 7, 5), (1, None, -5)], "sqlite", KEYS).violations


def test_pins_name_the_values_the_statement_was_sent_with():
    sql = "SELECT * FROM refunds WHERE refunds.refund_id = %(r)s"
    assert check(sql, {"r": "r1"}, "postgresql", KEYS).pins == [
        Pin("refunds", "routed", "refund_id", "r1")
    ]


def test_every_table_is_classified_once():
    tables = set(db.metadata.tables)
    assert tables - classified() == set(), "classify the new table in tests/sharding.py"
    assert classified() - tables == set(), "tests/sharding.py names a table that is gone"
    assert not (set(DISTRIBUTED) & set(REFERENCE) | set(DISTRIBUTED) & set(LOCAL))
    assert not set(REFERENCE) & set(LOCAL)


def test_each_distributed_tables_columns_exist():
    for name, spec in DISTRIBUTED.items():
        columns = set(db.metadata.tables[name].columns.keys())
        named = {spec.column, spec.group, *spec.routed, *(spec.parent or ())[:1]} - {None}
        assert named <= columns, name
        if spec.parent is not None:
            assert spec.parent[1] in DISTRIBUTED


def test_a_routed_key_names_one_row():
    for name, spec in DISTRIBUTED.items():
        table = db.metadata.tables[name]
        unique = {c.name for c in table.columns if c.unique or c.primary_key}
        unique |= {
            next(iter(i.columns)).name for i in table.indexes if i.unique and len(i.columns) == 1
        }
        unique |= {
            next(iter(c.columns)).name
            for c in table.constraints
            if isinstance(c, sa.UniqueConstraint) and len(c.columns) == 1
        }
        assert set(spec.routed) <= unique, name


def test_the_document_lists_every_table_under_its_class():
    text = DOC.read_text()
    sections = {
        "distributed": set(DISTRIBUTED),
        "reference": set(REFERENCE),
        "local": set(LOCAL),
    }
    for marker, expected in sections.items():
        block = re.search(rf"<!-- {marker} -->(.*?)<!-- /{marker} -->", text, re.DOTALL)
        assert block, f"docs/scaling.md has no {marker} table"
        listed = set(re.findall(r"^\| `(\w+)`", block.group(1), re.MULTILINE))
        assert listed == expected, marker
