"""The member list as CSV: a header row, then one row per member with their insight figures
(empty without an insight row), for the API's export and the console's."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from loyalty.insight import queries

CSV_COLUMNS = (
    "external_id",
    "email",
    "name",
    "status",
    "tier",
    "enrolled_at",
    *queries.FIGURES,
)
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """A value as CSV text: moments in RFC 3339, None empty, and text a spreadsheet would
    run as a formula prefixed with a quote."""
    if value is None:
        return ""
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    if isinstance(value, str) and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def csv_lines(rows: Iterator[queries.MemberRow]) -> Iterator[str]:
    """The header, then a line per member, each line written as it is asked for."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def line(values: list[Any]) -> str:
        writer.writerow([csv_cell(v) for v in values])
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(list(CSV_COLUMNS))
    for row in rows:
        figures = row.insight or {}
        yield line(
            [
                row.external_id,
                row.email,
                row.name,
                row.status,
                row.tier_code,
                row.enrolled_at,
                *(figures.get(name) for name in queries.FIGURES),
            ]
        )
