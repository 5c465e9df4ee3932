"""Many ledger transactions and entries at once on PostgreSQL (a batch settlement, an
import), for ``postings``: one INSERT ... SELECT FROM unnest(...) per table instead of a
statement or a parameter per row."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

# Each column goes as one array parameter, unnested into rows by the server. A multi-row
# VALUES of the same rows has a parameter per value, and converting thousands of them cost
# the client ten times the server's work. The arrays go in binary (%b): psycopg writes an
# array's text form in Python, element by element, at about five times the cost.
_TRANSACTION_COLUMNS = (
    "id", "public_id", "member_id", "kind", "effective_at", "created_at", "reference",
    "reason", "actor", "details", "qualifying", "qualifying_at",
)  # fmt: skip
_TIMES = ("effective_at", "created_at", "qualifying_at")
_UNNEST_TRANSACTIONS = """
INSERT INTO ledger_transactions (id, public_id, member_id, kind, effective_at, created_at,
    reference, reason, actor, details, qualifying, qualifying_at)
SELECT id, public_id, member_id, kind, effective_at, created_at, reference, reason, actor,
    details::json, qualifying, qualifying_at
FROM unnest(%b::bigint[], %b::uuid[], %b::bigint[], %b::text[], %b::timestamptz[],
    %b::timestamptz[], %b::text[], %b::text[], %b::text[], %b::text[], %b::bigint[],
    %b::timestamptz[])
    AS t(id, public_id, member_id, kind, effective_at, created_at, reference, reason, actor,
        details, qualifying, qualifying_at)
"""
_UNNEST_ENTRIES = """
INSERT INTO ledger_entries (transaction_id, member_id, account, amount)
SELECT * FROM unnest(%b::bigint[], %b::bigint[], %b::text[], %b::bigint[])
"""
# Ids drawn first, in order, so the entries can name their transactions without RETURNING.
_NEXT_TRANSACTION_IDS = (
    "SELECT nextval(pg_get_serial_sequence('ledger_transactions', 'id')) "
    "FROM generate_series(1, %s)"
)


def insert_transactions(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert ledger transaction `rows` (their ids set here, in order) on PostgreSQL."""
    # The server reads these as timestamptz without the column type's check: refuse naive
    # times here as UTCDateTime does, so no local time slips into the ledger.
    if any(row[c] is not None and row[c].tzinfo is None for row in rows for c in _TIMES):
        raise ValueError("naive datetime refused: times are timezone-aware UTC")
    connection = session.connection()
    ids = sorted(row[0] for row in connection.exec_driver_sql(_NEXT_TRANSACTION_IDS, (len(rows),)))
    for row, row_id in zip(rows, ids, strict=True):
        row["id"] = row_id
    arrays = tuple(
        [json.dumps(row[column]) for row in rows]
        if column == "details"
        else [row[column] for row in rows]
        for column in _TRANSACTION_COLUMNS
    )
    connection.exec_driver_sql(_UNNEST_TRANSACTIONS, arrays)


_ENTRY_COLUMNS = ("transaction_id", "member_id", "account", "amount")


def insert_entries(session: Session, entries: list[dict[str, Any]]) -> None:
    """Insert ledger entry rows (their transactions inserted first) on PostgreSQL."""
    arrays = tuple([entry[column] for entry in entries] for column in _ENTRY_COLUMNS)
    session.connection().exec_driver_sql(_UNNEST_ENTRIES, arrays)
