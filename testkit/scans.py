"""Which partitions of which tables a BigQuery statement reads, from its SQL alone.

BigQuery bills a query by the bytes of the columns it reads in the partitions it cannot
skip, and it skips a partition only for a filter on the partitioning column against a
constant: a literal, a query parameter, `current_timestamp()` and arithmetic on them; a
subquery or a join does not prune. This module finds, for every read of a table we
partition, whether the statement gives it such a filter, so a test can fail on a tick's
statement that scans a growing table whole, and the cost model (bench/bigquery_cost.py)
can price each statement. The emulator cannot tell: it reports 0 bytes for every job and
does not partition.

Conservative on purpose: a bound the SQL expresses only through a CTE or a view defined
elsewhere is not seen (BigQuery would push some of those down), so a read found unbounded
here may still prune in BigQuery, never the other way round.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.optimizer.scope import traverse_scope

from flows.core.raw_schema import DATA_TABLES


@dataclass(frozen=True)
class Layout:
    """A table as BigQuery stores it: partitioned by day or month of `time_column`, or not
    partitioned (None)."""

    time_column: str | None
    granularity: str | None  # "day" or "month"


def _layouts(*tables: tuple[str, str, str]) -> dict[str, Layout]:
    return {name: Layout(column, granularity) for name, column, granularity in tables}


# The tables that grow by a row per coin (or per rate) with every snapshot, as they are
# partitioned on BigQuery (the raw tables' declaration; the dbt models' `partition_by`), with
# the staging views on them: a tick's statement that reads one of them whole costs more every
# day. lake_files and ops_builds grow by a row or two a tick: the cost model prices them,
# under BigQuery's 10 MB minimum per table for years.
_RAW = {table.name: Layout(table.time_column, table.partition.lower()) for table in DATA_TABLES}
GROWING = {
    **_RAW,
    "stg_coinsdata": _RAW["coincap_assets"],
    "stg_coin_history": _RAW["coincap_history"],
    "stg_coincap_rates": _RAW["coincap_rates"],
    **_layouts(
        ("facts_coins", "snapshot_at", "day"),
        ("mart_coin_hourly", "bucket_at", "day"),
        ("mart_coin_daily", "bucket_at", "month"),
        ("mart_market_overview", "snapshot_at", "month"),
        ("mart_fiat_rates_hourly", "bucket_at", "month"),
    ),
}


@dataclass(frozen=True)
class TableRead:
    """One reference to one of our tables in a statement."""

    table: str  # the table's name, without project or dataset
    columns: frozenset[str]  # the columns the statement can read from it ("*": every one)
    bound: str | None  # the constant lower bound on its partition column, or None: every partition
    kind: str  # "read", or "merge target" (a MERGE reads its target's partitions too)


def _conjuncts(condition: exp.Expression | None) -> Iterable[exp.Expression]:
    if condition is None:
        return
    condition = condition.unnest()
    if isinstance(condition, exp.And):
        yield from _conjuncts(condition.left)
        yield from _conjuncts(condition.right)
    else:
        yield condition


def _is_constant(node: exp.Expression) -> bool:
    """A literal, a parameter or a function of them: nothing read from a row or a query."""
    return not any(isinstance(n, (exp.Column, exp.Select, exp.Subquery)) for n in node.walk())


def _names(column: exp.Column, table: exp.Table) -> bool:
    qualifier = column.table
    return not qualifier or qualifier in {table.alias_or_name, table.name}


def lower_bound(
    conditions: Iterable[exp.Expression], table: exp.Table, time_column: str | None
) -> str | None:
    """The SQL of a constant lower bound on `time_column` of `table` among `conditions`."""
    if time_column is None:
        return None
    for condition in conditions:
        for part in _conjuncts(condition):
            if isinstance(part, exp.Between):
                column, low = part.this, part.args["low"]
            elif isinstance(part, (exp.GTE, exp.GT, exp.EQ)):
                column, low = part.left, part.right
            elif isinstance(part, (exp.LTE, exp.LT)):
                column, low = part.right, part.left
            elif isinstance(part, exp.In) and part.expressions:
                column, low = part.this, exp.Tuple(expressions=part.expressions)
            else:
                continue
            if (
                isinstance(column, exp.Column)
                and column.name == time_column
                and _names(column, table)
                and _is_constant(low)
            ):
                return low.sql("bigquery")
    return None


def _filters(block: exp.Expression, table: exp.Table | None = None) -> list[exp.Expression]:
    """What filters `table`'s rows in a query block: its WHERE, the ON of its inner joins,
    and the ON of an outer join only for the table that join brings in (a LEFT JOIN keeps
    every row of the tables before it, whatever its ON says of them)."""
    conditions: list[exp.Expression] = []
    if where := block.args.get("where"):
        conditions.append(where.this)
    for join in block.args.get("joins") or []:
        on = join.args.get("on")
        if on is not None and (not join.side or join.this is table):
            conditions.append(on)
    return conditions


def _columns(columns: Iterable[exp.Column], alias: str, only_source: bool) -> set[str]:
    return {
        column.name
        for column in columns
        if column.table == alias or (not column.table and only_source)
    }


def table_reads(
    sql: str, layouts: Mapping[str, Layout], others: Layout | None = None
) -> list[TableRead]:
    """Every reference in `sql` (BigQuery SQL, one statement or a script) to a table named
    in `layouts` (by name, or a view on it named there too), and with `others` to any other
    table as laid out so, as read or merged into. The
    columns are those of the query block that reads the table (all of them for a `*`):
    what BigQuery bills, before it prunes columns through CTEs and subqueries."""
    reads: list[TableRead] = []
    for statement in sqlglot.parse(sql, read="bigquery"):
        if statement is None:
            continue
        for scope in traverse_scope(statement):
            block = scope.expression
            tables = {a: s for a, s in scope.sources.items() if isinstance(s, exp.Table)}
            star = isinstance(block, exp.Select) and any(
                isinstance(e, exp.Star) or (isinstance(e, exp.Column) and e.is_star)
                for e in block.expressions
            )
            for alias, table in tables.items():
                layout = layouts.get(table.name, others)
                if layout is None:
                    continue
                names = _columns(scope.columns, alias, only_source=len(scope.sources) == 1)
                bound = lower_bound(_filters(block, table), table, layout.time_column)
                columns = frozenset(names | ({"*"} if star else set()))
                reads.append(TableRead(table.name, columns, bound, "read"))
        for dml in statement.find_all(exp.Merge, exp.Update, exp.Delete):
            target = dml.this
            layout = layouts.get(target.name, others) if isinstance(target, exp.Table) else None
            if layout is None:
                continue
            alias = target.alias_or_name
            columns = frozenset(_columns(dml.find_all(exp.Column), alias, False))
            if isinstance(dml, exp.Merge):
                bound = lower_bound([dml.args["on"]], target, layout.time_column)
                reads.append(TableRead(target.name, columns, bound, "merge target"))
            else:
                bound = lower_bound(_filters(dml), target, layout.time_column)
                reads.append(TableRead(target.name, columns, bound, "dml target"))
    return reads
