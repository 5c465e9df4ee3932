"""Reading an import file: its CSV rows, each field held to the API's own bounds, the rows
rejected with their reasons, and the report of them.

A file that is not CSV text as a whole (not UTF-8, malformed quoting, an unclosed quote) is
refused whole, whatever the mode; otherwise each row is checked on its own and either
parsed or rejected with its line and reason. Rows are read as a stream, never held whole.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from loyalty.members.models import EXTERNAL_ID_PATTERN

EXTERNAL_ID = re.compile(EXTERNAL_ID_PATTERN)
DIGITS = re.compile(r"[0-9]+")


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


def text_field(row: dict[str, str], name: str, longest: int) -> str | None:
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


def id_field(row: dict[str, str], name: str) -> str:
    """An id under the API's bound for member ids (order ids use the same characters)."""
    if not EXTERNAL_ID.match(row[name]):
        raise ValueError(f"{name}: 1-128 letters, digits or . _ : @ + -")
    return row[name]


def moment_field(row: dict[str, str], name: str) -> dt.datetime | None:
    """An optional moment with a UTC offset that exists in UTC, as the API takes them."""
    if not row.get(name):
        return None
    try:
        moment = dt.datetime.fromisoformat(row[name])
    except ValueError:
        raise ValueError(f"{name}: not a time (2027-06-30T00:00:00+00:00)") from None
    if moment.tzinfo is None:
        raise ValueError(f"{name}: give a UTC offset (2027-06-30T00:00:00+00:00)")
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError(f"{name}: out of range") from None


def whole_field(row: dict[str, str], name: str, most: int, unit: str) -> int:
    """A whole number from 0 to `most`, digits only (no sign, point or exponent)."""
    text = row[name]
    if not DIGITS.fullmatch(text):
        raise ValueError(f"{name}: a whole number of {unit}, 0 or more")
    # Measured before int(): a field of thousands of digits is past any bound (and past
    # what int() reads).
    if len(text) > len(str(most)) or int(text) > most:
        raise ValueError(f"{name}: at most {most}")
    return int(text)


Parsed = tuple[int, dict[str, Any], dict[str, str]]  # line, parsed, the row as written


def checked(
    stream: TextIO,
    required: set[str],
    parse: Callable[[dict[str, str]], dict[str, Any]],
    rejected: list[Rejected],
    key: str = "external_id",
) -> Iterator[Parsed]:
    """The rows `parse` accepts, each `key` once, as they are read (a file of a million
    orders is never held whole); the others are appended to `rejected` with their reason."""
    seen: set[str] = set()
    for line, row in _rows(stream, required):
        try:
            parsed = parse(row)
        except (ValueError, KeyError) as error:
            rejected.append(Rejected(line, row, str(error)))
            continue
        if parsed[key] in seen:
            rejected.append(Rejected(line, row, f"{key}: appears twice in the file"))
            continue
        seen.add(parsed[key])
        yield line, parsed, row


def validate(
    stream: TextIO, required: set[str], parse: Callable[[dict[str, str]], dict[str, Any]]
) -> tuple[list[Parsed], list[Rejected]]:
    """Returns the valid rows as (line, parsed, row as written) and the rejected ones."""
    rejected: list[Rejected] = []
    valid = list(checked(stream, required, parse, rejected))
    return valid, rejected


def write_report(rejected: list[Rejected], stream: TextIO) -> None:
    """The rejected rows as CSV: line, reason, then the row's own columns."""
    columns = sorted({key for item in rejected for key in item.row})
    writer = csv.DictWriter(stream, fieldnames=["line", "reason", *columns])
    writer.writeheader()
    for item in rejected:
        writer.writerow({"line": item.line, "reason": item.reason, **item.row})
