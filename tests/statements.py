"""Does one SQL statement stay within one member's rows? (tests/sharding.py has the tables.)

``check(sql, parameters, dialect, unique_keys)`` parses a statement as the driver received
it (sqlglot) and returns what it found: the violations, and the pins, each a claim "this
table's rows here belong to the member that this value names". A test then resolves every
pin to a member (``Pin.kind`` says how) and proves it is the request's member.

A distributed table is pinned by
- an equality (or an IN of one value) on its member column;
- for a child without a member column, an equality on its parent key (or an INSERT of it);
- an equality on one of its listed routed keys (``Distributed.routed``);
- ``member = m OR group = m`` on members (``Distributed.group``), or an IN of a subquery of
  members pinned that way: the member and the duplicates merged into it;
- a join of its member column to a pinned table's member column;
- an INSERT that carries its member column.
A local table a hot path may touch is pinned to one row by equalities on every column of one
of its unique keys, by an INSERT, or by a join of its key to a column of a pinned table.
Conditions only count where they must hold: the conjuncts of a WHERE or a JOIN's ON, never
under an OR (but for the group form) or a NOT.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp

from tests.sharding import DISTRIBUTED, LOCAL, REFERENCE

SKIPPED = re.compile(r"^\s*(SAVEPOINT|RELEASE|ROLLBACK|BEGIN|COMMIT|PRAGMA)\b", re.IGNORECASE)
UNSET = object()


@dataclass(frozen=True)
class Pin:
    table: str
    kind: str  # "member", "group", "parent" or "routed"
    column: str
    value: Any


@dataclass
class Verdict:
    sql: str
    violations: list[str] = field(default_factory=list)
    pins: list[Pin] = field(default_factory=list)
    tables: set[str] = field(default_factory=set)  # every table the statement names


def check(
    sql: str,
    parameters: Any,
    dialect: str,
    unique_keys: Mapping[str, Sequence[frozenset[str]]],
) -> Verdict:
    """The verdict on one statement; an executemany's parameter sets are checked each."""
    verdict = Verdict(sql)
    if SKIPPED.match(sql):
        return verdict
    text, names = _named(sql, dialect)
    try:
        tree = sqlglot.parse_one(text, read="postgres" if dialect == "postgresql" else "sqlite")
    except sqlglot.errors.ParseError as error:
        verdict.violations.append(f"cannot parse: {error}")
        return verdict
    if not isinstance(tree, exp.Query | exp.Insert | exp.Update | exp.Delete):
        verdict.violations.append(f"not a statement the checker knows: {type(tree).__name__}")
        return verdict
    sets = parameters if isinstance(parameters, list) else [parameters]
    for params in sets:
        bound = _bind(params, names)
        _Statement(tree, bound, unique_keys, verdict).run()
    return verdict


def _named(sql: str, dialect: str) -> tuple[str, list[str]]:
    """The statement with named placeholders (:name), and the names of positional ones."""
    if dialect == "postgresql":
        return re.sub(r"%\((\w+)\)s", r":\1", sql), []
    names: list[str] = []

    def name(_: re.Match[str]) -> str:
        names.append(f"p{len(names)}")
        return f":{names[-1]}"

    return re.sub(r"\?", name, sql), names


def _bind(params: Any, names: list[str]) -> dict[str, Any]:
    if params is None:
        return {}
    if isinstance(params, Mapping):
        return dict(params)
    return dict(zip(names, params, strict=True))


class _Statement:
    def __init__(
        self,
        tree: exp.Expression,
        params: dict[str, Any],
        unique_keys: Mapping[str, Sequence[frozenset[str]]],
        verdict: Verdict,
    ) -> None:
        self.tree, self.params, self.unique_keys, self.verdict = tree, params, unique_keys, verdict
        # alias -> table name, for every table the statement names
        self.aliases: dict[str, str] = {}
        for table in tree.find_all(exp.Table):
            if not table.name:
                continue
            alias = table.alias_or_name
            # Pins are per alias: two references under one alias could not be told apart.
            if alias in self.aliases and table.name not in REFERENCE:
                self._violate(f"{table.name}: named twice as {alias}; alias one of them")
            self.aliases[alias] = table.name
            verdict.tables.add(table.name)
        self.pinned: set[str] = set()  # aliases pinned to one member (or one row)

    def run(self) -> None:
        target = self._written_table()
        for alias, name in self.aliases.items():
            if name not in DISTRIBUTED and name not in REFERENCE and name not in LOCAL:
                self._violate(f"{name}: in neither list of tests/sharding.py")
            elif name in LOCAL and LOCAL[name].hot_path is None:
                self._violate(f"{name}: a coordinator-only table on a hot path")
            elif name in REFERENCE and target == alias:
                self._violate(f"{name}: a hot path writes a reference table")
        if isinstance(self.tree, exp.Insert):
            self._insert()
        conjuncts = self._conjuncts()
        changed = True
        while changed:
            changed = False
            for condition in conjuncts:
                changed |= self._pin(condition)
        for alias, name in self.aliases.items():
            if alias in self.pinned or name in REFERENCE:
                continue
            if name in DISTRIBUTED:
                self._violate(f"{name}: not constrained to one member")
            elif name in LOCAL and LOCAL[name].hot_path is not None:
                self._violate(f"{name}: not constrained to one row")

    def _violate(self, message: str) -> None:
        if message not in self.verdict.violations:
            self.verdict.violations.append(message)

    def _written_table(self) -> str | None:
        if isinstance(self.tree, exp.Insert | exp.Update | exp.Delete):
            table = self.tree.find(exp.Table)
            return table.alias_or_name if table is not None else None
        return None

    # -- INSERT -------------------------------------------------------------------------

    def _insert(self) -> None:
        schema = self.tree.this
        table = schema.this if isinstance(schema, exp.Schema) else schema
        alias, name = table.alias_or_name, table.name
        columns = [c.name for c in schema.expressions] if isinstance(schema, exp.Schema) else []
        values = self.tree.expression
        if not isinstance(values, exp.Values):
            if name in DISTRIBUTED:
                self._violate(f"{name}: INSERT ... SELECT (its rows' members are not checked)")
            return
        for row in values.expressions:
            given = dict(zip(columns, row.expressions, strict=False))
            self._insert_row(alias, name, given)

    def _insert_row(self, alias: str, name: str, given: dict[str, exp.Expression]) -> None:
        if name in LOCAL:
            self.pinned.add(alias)
            return
        spec = DISTRIBUTED.get(name)
        if spec is None:
            return
        if spec.column is not None:
            column, kind = spec.column, "member"
        else:
            assert spec.parent is not None
            column, kind = spec.parent[0], "parent"
        value = self._value(given[column]) if column in given else UNSET
        if value is UNSET or value is None:
            self._violate(f"{name}: INSERT without its {column}")
            return
        self.pinned.add(alias)
        self.verdict.pins.append(Pin(name, kind, column, value))

    # -- conditions ----------------------------------------------------------------------

    def _conjuncts(self) -> list[exp.Expression]:
        found: list[exp.Expression] = []
        for node in self.tree.find_all(exp.Where, exp.Join):
            condition = node.this if isinstance(node, exp.Where) else node.args.get("on")
            if condition is not None:
                found.extend(_flatten_and(condition))
        return found

    def _pin(self, condition: exp.Expression) -> bool:
        """Pin what one conjunct pins; True when it pinned something new."""
        if isinstance(condition, exp.Paren):
            return self._pin(condition.this)
        if isinstance(condition, exp.EQ):
            left, right = condition.this, condition.expression
            if isinstance(right, exp.Column) and not isinstance(left, exp.Column):
                left, right = right, left
            if not isinstance(left, exp.Column):
                return False
            if isinstance(right, exp.Column):
                return self._join(left, right) or self._join(right, left)
            value = self._value(right)
            return value is not UNSET and self._pin_value(left, value)
        if isinstance(condition, exp.In) and isinstance(condition.this, exp.Column):
            column = condition.this
            query = condition.args.get("query")
            if query is not None:
                return self._pin_group_subquery(column, query)
            items = condition.expressions
            if len(items) == 1:
                value = self._value(items[0])
                return value is not UNSET and self._pin_value(column, value)
            return False
        if isinstance(condition, exp.Or):
            return self._pin_group(condition)
        return False

    def _pin_value(self, column: exp.Column, value: Any) -> bool:
        alias, name = self._table_of(column)
        if alias is None or alias in self.pinned:
            return False
        spec = DISTRIBUTED.get(name)
        pin = None
        if spec is not None:
            if column.name == spec.column:
                pin = Pin(name, "member", column.name, value)
            elif spec.parent is not None and column.name == spec.parent[0]:
                pin = Pin(name, "parent", column.name, value)
            elif column.name in spec.routed:
                pin = Pin(name, "routed", column.name, value)
        elif name in LOCAL:
            return self._pin_row(alias, name)
        if pin is None:
            return False
        self.pinned.add(alias)
        self.verdict.pins.append(pin)
        return True

    def _pin_row(self, alias: str, name: str) -> bool:
        """A local table: pinned once every column of one of its unique keys is equated to
        a value in the statement's conjuncts."""
        equal = set()
        for condition in self._conjuncts():
            if isinstance(condition, exp.EQ):
                for column, other in (
                    (condition.this, condition.expression),
                    (condition.expression, condition.this),
                ):
                    if (
                        isinstance(column, exp.Column)
                        and self._table_of(column)[0] == alias
                        and self._value(other) is not UNSET
                    ):
                        equal.add(column.name)
        if any(key <= equal for key in self.unique_keys.get(name, ())):
            self.pinned.add(alias)
            return True
        return False

    def _join(self, column: exp.Column, other: exp.Column) -> bool:
        """``column = other``: pins column's table when other's table is pinned and the two
        are its member column and other's member column, or column is a local table's key
        and other is a pinned row's column."""
        alias, name = self._table_of(column)
        other_alias, other_name = self._table_of(other)
        if alias is None or other_alias is None or alias in self.pinned:
            return False
        if other_alias not in self.pinned:
            return False
        spec, other_spec = DISTRIBUTED.get(name), DISTRIBUTED.get(other_name)
        if spec is not None and other_spec is not None:
            ours = column.name == spec.column
            theirs = other.name == other_spec.column
            parent = spec.parent is not None and (column.name, other_name) == spec.parent
            if (ours and theirs) or (parent and other.name == "id"):
                self.pinned.add(alias)
                return True
            return False
        if name in LOCAL and any(key == {column.name} for key in self.unique_keys.get(name, ())):
            self.pinned.add(alias)
            return True
        return False

    def _pin_group(self, condition: exp.Or) -> bool:
        """``members.id = m OR members.merged_into_id = m``: the member and its group."""
        sides = _flatten_or(condition)
        if len(sides) != 2 or not all(isinstance(s, exp.EQ) for s in sides):
            return False
        seen: dict[str, Any] = {}
        aliases = set()
        for side in sides:
            column, value = side.this, self._value(side.expression)
            if not isinstance(column, exp.Column) or value is UNSET:
                return False
            alias, name = self._table_of(column)
            spec = DISTRIBUTED.get(name)
            if spec is None or spec.group is None or column.name not in (spec.column, spec.group):
                return False
            seen[column.name] = value
            aliases.add(alias)
        if len(aliases) != 1 or len(seen) != 2 or len(set(map(repr, seen.values()))) != 1:
            return False
        (alias,) = aliases
        if alias in self.pinned:
            return False
        name = self.aliases[alias]
        column = DISTRIBUTED[name].column or "id"
        self.pinned.add(alias)
        self.verdict.pins.append(Pin(name, "group", column, next(iter(seen.values()))))
        return True

    def _pin_group_subquery(self, column: exp.Column, query: exp.Expression) -> bool:
        """``t.member_id IN (SELECT members.id FROM members WHERE <a member's group>)``."""
        alias, name = self._table_of(column)
        spec = DISTRIBUTED.get(name)
        if alias is None or alias in self.pinned or spec is None or column.name != spec.column:
            return False
        select = query if isinstance(query, exp.Select) else query.find(exp.Select)
        if select is None or len(select.expressions) != 1:
            return False
        selected = select.expressions[0]
        if not isinstance(selected, exp.Column):
            return False
        inner_alias, inner_name = self._table_of(selected)
        inner = DISTRIBUTED.get(inner_name)
        if inner is None or selected.name != inner.column or inner_alias not in self.pinned:
            return False
        self.pinned.add(alias)
        return True

    # -- helpers -------------------------------------------------------------------------

    def _table_of(self, column: exp.Column) -> tuple[str | None, str]:
        if column.table:
            return column.table, self.aliases.get(column.table, column.table)
        scope = column.find_ancestor(exp.Select, exp.Update, exp.Delete, exp.Insert)
        tables = [] if scope is None else [t for t in scope.find_all(exp.Table) if t.name]
        if isinstance(scope, exp.Select):
            tables = [t for t in tables if t.find_ancestor(exp.Select) is scope]
        if len(tables) == 1:
            return tables[0].alias_or_name, tables[0].name
        return None, ""

    def _value(self, node: exp.Expression) -> Any:
        """The single value a placeholder or literal stands for; UNSET for anything else."""
        while isinstance(node, exp.Cast | exp.Paren):
            node = node.this
        if isinstance(node, exp.Placeholder) and node.name in self.params:
            return self.params[node.name]
        if isinstance(node, exp.Literal):
            return node.to_py()
        return UNSET


def _flatten_and(condition: exp.Expression) -> list[exp.Expression]:
    while isinstance(condition, exp.Paren):
        condition = condition.this
    if isinstance(condition, exp.And):
        return _flatten_and(condition.this) + _flatten_and(condition.expression)
    return [condition]


def _flatten_or(condition: exp.Expression) -> list[exp.Expression]:
    while isinstance(condition, exp.Paren):
        condition = condition.this
    if isinstance(condition, exp.Or):
        return _flatten_or(condition.this) + _flatten_or(condition.expression)
    return [condition]
