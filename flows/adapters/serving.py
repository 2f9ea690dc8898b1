"""What the analyst app reads on the local target: a serving copy of the prod models.

DuckDB lets one process write a file and then no one else may even read it, so the app
never opens the warehouse. After each build the pipeline publishes into one of two serving
files (`a.duckdb`, `b.duckdb`), the one readers are *not* using, then flips the `current`
pointer with an atomic rename. Readers open the current file read-only for one query and
close it, so a publish never meets a reader and a reader never sees a half-built model.

Each copy is caught up incrementally: rows whose `load_seq` is above the highest the copy
holds, upserted by key (never appended), so publishing costs what changed, not the size of
the history, no clock is involved, and a row published twice is still one row. The 5-minute
fact is served for the last `RECENT_FACT_DAYS` days only: longer chart ranges read the
hourly and daily rollups.

The per-coin tables are kept sorted by coin (their key), so a page reading a few coins
touches their row groups only (DuckDB skips the rest by each row group's min/max). Rows a
tick adds land unsorted at the end; once that tail passes `RESORT_TAIL_ROWS` the table is
rewritten in key order. The facts' tail grows 2,000 rows a tick (a
re-sort every 61 ticks, 5 hours, about 4 s at 90 days); the hourly rollup's by 2,000 an
hour (a tick replaces the current hour's rows), so every 61 hours; the daily's every 61 days.
Coin pages read 1.6-2.3x faster at 1D-3M in one A/B run (`bench.app_queries --sort-ab`).

A copy repairs itself: it is rebuilt from the warehouse when it cannot be opened or read,
when it was made from another warehouse (each has an id; a warehouse rebuilt from the lake
is a new one, whose load sequence starts again), or when, after catching up, its row counts
disagree with the warehouse's.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import duckdb

from flows.core.queries import QueryParams

if TYPE_CHECKING:  # the app's readers return DataFrames; a tick never loads pandas (80 MB)
    import pandas as pd

log = logging.getLogger(__name__)

RECENT_FACT_DAYS = 8
# one DuckDB row group: a shorter unsorted tail costs a coin query one or two more groups
RESORT_TAIL_ROWS = 122_880
COPIES = ("a", "b")
POINTER = "current"


@dataclass(frozen=True)
class ServedTable:
    name: str  # schema.table, the same in the warehouse and the serving copy
    mode: Literal["replace", "upsert", "upsert_recent"]
    key: tuple[str, ...] = ()
    clustered: bool = False  # kept in key order: pages read it a few coins at a time

    @property
    def time_column(self) -> str:
        """Every upserted table's key ends with the row's time (a snapshot or a bucket)."""
        return self.key[-1]


SERVED_TABLES: tuple[ServedTable, ...] = (
    ServedTable("prod.mart_latest_ranking", "replace"),
    ServedTable("prod.dim_coins", "replace"),
    ServedTable("prod.mart_market_overview", "upsert", ("snapshot_at",)),
    ServedTable("prod.mart_coin_hourly", "upsert", ("coin_id", "bucket_at"), clustered=True),
    ServedTable("prod.mart_coin_daily", "upsert", ("coin_id", "bucket_at"), clustered=True),
    ServedTable("prod.mart_fiat_rates_hourly", "upsert", ("symbol", "bucket_at")),
    ServedTable("prod.facts_coins", "upsert_recent", ("coin_id", "snapshot_at"), clustered=True),
    ServedTable("ops.dbt_results", "replace"),
    ServedTable("ops.dead_letters", "replace"),
    ServedTable("ops.builds", "replace"),
    ServedTable("ops.audit", "replace"),
)
OPS_TABLES = tuple(table for table in SERVED_TABLES if table.name.startswith("ops."))


@dataclass
class PublishResult:
    copy: str
    rows_copied: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    rebuilt: str | None = None  # why the copy was rebuilt from the warehouse, if it was


def current_copy(serving_dir: Path) -> Path | None:
    """The serving file readers should open now, or None before the first publish."""
    try:
        name = (serving_dir / POINTER).read_text().strip()
    except FileNotFoundError:
        return None
    path = serving_dir / f"{name}.duckdb"
    return path if name in COPIES and path.exists() else None


def publish(
    warehouse_path: Path,
    serving_dir: Path,
    *,
    full: bool = False,
    memory_limit: str | None = None,
    ops_only: bool = False,
) -> PublishResult:
    """Bring the copy readers are not using up to date with the warehouse, then point
    readers at it. `full` rebuilds the copy (after a full refresh or a model change);
    `ops_only` refreshes only the health page's tables (after a failed build: the models
    stay as last published)."""
    started = time.perf_counter()
    serving_dir.mkdir(parents=True, exist_ok=True)
    current = current_copy(serving_dir)
    target_name = "b" if current is not None and current.stem == "a" else "a"
    target = serving_dir / f"{target_name}.duckdb"
    result = PublishResult(copy=target_name)
    if ops_only and current is None:
        return result  # nothing published yet: the first good build publishes everything
    if ops_only and current is not None:
        # the models stay exactly as readers see them now: start from the current copy (a
        # new file, renamed over the target, so a reader still on the old one is untouched)
        _replace_with_copy_of(current, target)
    elif current is not None and not target.exists() and not full:
        # the second copy starts as a file copy of the first, then takes the delta: cheaper
        # than reading the same rows out of the warehouse again
        shutil.copyfile(current, target)
    tables = OPS_TABLES if ops_only else SERVED_TABLES
    try:
        _catch_up(target, warehouse_path, tables, result, full=full, memory_limit=memory_limit)
    except duckdb.Error as exc:
        if _is_lock_conflict(exc):
            raise
        # a copy that cannot be opened or read is rebuilt from the warehouse, never patched
        result.rebuilt = f"the copy could not be used ({exc.__class__.__name__}: {exc})"[:300]
        log.warning("serving copy %s rebuilt: %s", target.name, result.rebuilt)
        _remove_copy(target)
        result.rows_copied.clear()
        _catch_up(target, warehouse_path, tables, result, full=True, memory_limit=memory_limit)
    _point_readers_at(serving_dir, target_name)
    result.seconds = time.perf_counter() - started
    return result


def _catch_up(
    target: Path,
    warehouse_path: Path,
    tables: tuple[ServedTable, ...],
    result: PublishResult,
    *,
    full: bool,
    memory_limit: str | None,
) -> None:
    con = _connect_for_writing(target, memory_limit)
    try:
        con.execute("attach $path as warehouse (read_only)", {"path": str(warehouse_path)})
        warehouse_id = _warehouse_id(con)
        if not full and tables is SERVED_TABLES and _served_from(con) != warehouse_id:
            result.rebuilt = "the copy was made from another warehouse (rebuilt from the lake?)"
            full = True
        for attempt in ("sync", "check"):
            for table in tables:
                if _exists(con, "warehouse", table.name):
                    result.rows_copied[table.name] = _sync(con, table, full=full)
            mismatch = None if tables is not SERVED_TABLES else _disagreement(con)
            if mismatch is None:
                break
            if attempt == "check":
                raise RuntimeError(f"the serving copy still disagrees after a rebuild: {mismatch}")
            result.rebuilt = f"the copy disagreed with the warehouse: {mismatch}"
            log.warning("serving copy %s rebuilt: %s", target.name, result.rebuilt)
            full = True
        _write_model_rows(con, warehouse_id)
        con.execute("detach warehouse")
        con.execute("checkpoint")
    finally:
        con.close()


def _replace_with_copy_of(source: Path, target: Path) -> None:
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(source, temporary)
    target.with_name(target.name + ".wal").unlink(missing_ok=True)
    os.replace(temporary, target)


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def _remove_copy(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)


def _warehouse_id(con: duckdb.DuckDBPyConnection) -> str | None:
    if not _exists(con, "warehouse", "ops.warehouse_info"):
        return None
    return con.execute("select warehouse_id from warehouse.ops.warehouse_info").fetchall()[0][0]


def _served_from(con: duckdb.DuckDBPyConnection) -> str | None:
    catalog = _catalog(con)
    if not _exists(con, catalog, "ops.published"):
        return None
    if "warehouse_id" not in {name for name, _ in _columns(con, catalog, "ops.published")}:
        return None
    rows = con.execute("select warehouse_id from ops.published").fetchall()
    return rows[0][0] if rows else None


def _disagreement(con: duckdb.DuckDBPyConnection) -> str | None:
    """A cheap check after catching up: the copy's row counts must equal the warehouse's
    (for the fact, over the recent window the copy serves)."""
    catalog = _catalog(con)
    for table in SERVED_TABLES:
        if not _exists(con, "warehouse", table.name) or table.mode == "replace":
            continue
        where = ""
        if table.mode == "upsert_recent":
            bound = con.execute(f"select max(snapshot_at) from warehouse.{table.name}").fetchall()
            if bound[0][0] is None:
                continue
            where = (
                f"where snapshot_at >= timestamp '{bound[0][0].isoformat(sep=' ')}' "
                f"- interval {RECENT_FACT_DAYS} day"
            )
        (ours,) = con.execute(f"select count(*) from {catalog}.{table.name} {where}").fetchall()[0]
        (theirs,) = con.execute(f"select count(*) from warehouse.{table.name} {where}").fetchall()[
            0
        ]
        if ours != theirs:
            return f"{table.name} has {ours:,} rows, the warehouse {theirs:,}"
    return None


def _connect_for_writing(
    path: Path, memory_limit: str | None, attempts: int = 10
) -> duckdb.DuckDBPyConnection:
    """A reader may still hold this copy for a moment (it was current two publishes ago)."""
    config: dict[str, str | bool | int | float | list[str]] = (
        {"memory_limit": memory_limit} if memory_limit else {}
    )
    for attempt in range(1, attempts + 1):
        try:
            return duckdb.connect(str(path), config=config)
        except duckdb.IOException as exc:
            if attempt == attempts or not _is_lock_conflict(exc):
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")  # pragma: no cover


def _exists(con: duckdb.DuckDBPyConnection, catalog: str, qualified: str) -> bool:
    schema, table = qualified.split(".")
    found = con.execute(
        "select count(*) from duckdb_tables() where database_name = $catalog "
        "and schema_name = $schema and table_name = $table",
        {"catalog": catalog, "schema": schema, "table": table},
    ).fetchall()[0][0]
    return bool(found)


def _columns(con: duckdb.DuckDBPyConnection, catalog: str, qualified: str) -> list[tuple[str, str]]:
    schema, table = qualified.split(".")
    return con.execute(
        "select column_name, data_type from duckdb_columns() where database_name = $catalog "
        "and schema_name = $schema and table_name = $table order by column_index",
        {"catalog": catalog, "schema": schema, "table": table},
    ).fetchall()


def _sync(con: duckdb.DuckDBPyConnection, table: ServedTable, *, full: bool) -> int:
    source = f"warehouse.{table.name}"
    schema = table.name.split(".")[0]
    con.execute(f"create schema if not exists {schema}")
    same_shape = _exists(con, _catalog(con), table.name) and (
        _columns(con, _catalog(con), table.name) == _columns(con, "warehouse", table.name)
    )

    def recent_in(relation: str) -> str:
        return (
            f"snapshot_at >= (select max(snapshot_at) from {relation}) "
            f"- interval {RECENT_FACT_DAYS} day"
        )

    order = f"order by {', '.join(table.key)}" if table.clustered else ""
    if full or table.mode == "replace" or not same_shape:
        where = f"where {recent_in(source)}" if table.mode == "upsert_recent" else ""
        con.execute(
            f"create or replace table {table.name} as select * from {source} {where} {order}"
        )
        _mark_sorted(con, table)
        return con.execute(f"select count(*) from {table.name}").fetchall()[0][0]

    watermark = con.execute(f"select max(load_seq) from {table.name}").fetchall()[0][0]
    # a literal, not a bound parameter: DuckDB then skips the warehouse's old row groups
    # instead of scanning the whole history (publish grew from 0.14 s to 1.3 s at 90 days)
    new_rows = f"select * from {source} where load_seq > {int(watermark or 0)}"
    (earliest,) = con.execute(f"select min({table.time_column}) from ({new_rows})").fetchall()[0]
    if earliest is None:
        return 0
    con.execute("begin transaction")
    # upsert by key: rows published again (a rerun, a rebuilt model) replace, never double.
    # A row with a new row's key has that row's time, so the time bound changes nothing, but
    # DuckDB skips every row group whose newest time is older than the batch: a clustered
    # copy's sorted part was sorted before the batch came, so only its unsorted tail is read.
    # Measured on the facts' copy at 90 days (4.6 M rows): the key match alone 0.17-0.35 s
    # (as a struct `in` or this join), 2-5 ms with the bound, bound parameter or literal
    matches = " and ".join(f"{table.name}.{column} = new_rows.{column}" for column in table.key)
    con.execute(
        f"delete from {table.name} using ({new_rows}) as new_rows where {matches} "
        f"and {table.name}.{table.time_column} >= $earliest",
        {"earliest": earliest},
    )
    copied = con.execute(f"insert into {table.name} {new_rows}").fetchall()[0][0]
    if table.mode == "upsert_recent":
        # the window's end from the copy itself: the warehouse's table holds all of history
        con.execute(f"delete from {table.name} where not ({recent_in(table.name)})")
    if table.clustered and _unsorted_tail(con, table) > RESORT_TAIL_ROWS:
        con.execute(f"create or replace table {table.name} as select * from {table.name} {order}")
        _mark_sorted(con, table)
    con.execute("commit")
    return copied


def _mark_sorted(con: duckdb.DuckDBPyConnection, table: ServedTable) -> None:
    """Remember the highest load_seq the table held when it was last put in key order."""
    if not table.clustered:
        return
    con.execute("create schema if not exists ops")
    con.execute(
        "create table if not exists ops.sorted_through (served_table varchar, load_seq bigint)"
    )
    con.execute("delete from ops.sorted_through where served_table = $name", {"name": table.name})
    con.execute(
        f"insert into ops.sorted_through select $name, max(load_seq) from {table.name}",
        {"name": table.name},
    )


def _unsorted_tail(con: duckdb.DuckDBPyConnection, table: ServedTable) -> int:
    """Rows added since the last sort (all of them if the copy predates sorting)."""
    sorted_seq = None
    if _exists(con, _catalog(con), "ops.sorted_through"):
        rows = con.execute(
            "select load_seq from ops.sorted_through where served_table = $name",
            {"name": table.name},
        ).fetchall()
        sorted_seq = rows[0][0] if rows else None
    watermark = -1 if sorted_seq is None else int(sorted_seq)
    # a literal: the tail is at the end, DuckDB skips the sorted row groups by min/max
    return con.execute(
        f"select count(*) from {table.name} where load_seq > {watermark}"
    ).fetchall()[0][0]


def _catalog(con: duckdb.DuckDBPyConnection) -> str:
    return con.execute("select current_database()").fetchall()[0][0]


def _write_model_rows(con: duckdb.DuckDBPyConnection, warehouse_id: str | None) -> None:
    """Row counts of the warehouse's models (the serving copy holds only recent facts)."""
    con.execute("create schema if not exists ops")
    con.execute(
        """
        create or replace table ops.model_rows as
        select schema_name || '.' || table_name as model, estimated_size as row_count
        from duckdb_tables()
        where database_name = 'warehouse' and schema_name in ('raw', 'prod')
        """
    )
    con.execute(
        "create or replace table ops.published as "
        "select $at::timestamp as published_at, $id::varchar as warehouse_id",
        {"at": datetime.now(tz=UTC).replace(tzinfo=None), "id": warehouse_id},
    )


def _point_readers_at(serving_dir: Path, name: str) -> None:
    temporary = serving_dir / f".{POINTER}.tmp"
    temporary.write_text(name)
    os.replace(temporary, serving_dir / POINTER)


class Reader(Protocol):
    """How the app runs a query: named `$parameters`, a DataFrame back."""

    def query(self, sql: str, params: QueryParams | None = None) -> pd.DataFrame: ...


class ServingReader:
    """Read-only queries against the current serving copy.

    Opening a DuckDB file costs ~15 ms, more than most of our queries, so a connection is
    kept per copy, shared by threads (a cursor each), and let go as soon as it is not the
    current copy and no query uses it, or after `idle_seconds` without a query. The copy
    a reader may still hold is never the one the next publish writes (that happens 5
    minutes after the flip), and the publisher retries briefly if a reader lingers."""

    def __init__(self, serving_dir: Path, idle_seconds: float = 20.0) -> None:
        self.serving_dir = serving_dir
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._open: dict[Path, _OpenCopy] = {}
        self._reaper: threading.Timer | None = None

    def query(self, sql: str, params: QueryParams | None = None) -> pd.DataFrame:
        path = current_copy(self.serving_dir)
        if path is None:
            raise NoDataYet("nothing has been published yet: run the pipeline once")
        copy = self._acquire(path)
        try:
            cursor = copy.connection.cursor()
            try:
                return cursor.execute(sql, params or {}).df()
            finally:
                cursor.close()
        finally:
            self._release(path)

    def close(self) -> None:
        with self._lock:
            for copy in self._open.values():
                copy.connection.close()
            self._open.clear()

    def _acquire(self, path: Path) -> _OpenCopy:
        with self._lock:
            copy = self._open.get(path)
            if copy is None:
                copy = self._open[path] = _OpenCopy(duckdb.connect(str(path), read_only=True))
            copy.in_use += 1
            return copy

    def _release(self, path: Path) -> None:
        with self._lock:
            copy = self._open[path]
            copy.in_use -= 1
            copy.last_used = time.monotonic()
            self._close_unused(keep=current_copy(self.serving_dir), idle=self.idle_seconds)
            if self._open and self._reaper is None:
                self._reaper = threading.Timer(self.idle_seconds, self._reap)
                self._reaper.daemon = True
                self._reaper.start()

    def _reap(self) -> None:
        with self._lock:
            self._reaper = None
            self._close_unused(keep=None, idle=self.idle_seconds)
            if self._open:
                self._reaper = threading.Timer(self.idle_seconds, self._reap)
                self._reaper.daemon = True
                self._reaper.start()

    def _close_unused(self, keep: Path | None, idle: float) -> None:
        """Close copies no query uses that are either not `keep` or idle too long."""
        now = time.monotonic()
        for path, copy in list(self._open.items()):
            if copy.in_use == 0 and (path != keep or now - copy.last_used >= idle):
                copy.connection.close()
                del self._open[path]


@dataclass
class _OpenCopy:
    connection: duckdb.DuckDBPyConnection
    in_use: int = 0
    last_used: float = field(default_factory=time.monotonic)


class NoDataYet(RuntimeError):
    """The pipeline has not published anything yet."""
