"""Loading lake files into the warehouse, exactly once.

The loader does not trust a `max(timestamp)` watermark (late and backfilled files would be
skipped). The warehouse keeps a manifest of loaded lake files, `raw.lake_files`; each run
loads every lake file missing from it. A file's rows and its manifest entry are committed in
one transaction, so a crash at any point leaves the file either wholly loaded or not at all,
and the next run finishes the work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, Self

import duckdb
import pyarrow as pa

from flows.lake import HistoryKey, Lake, history_key, source_of
from flows.snapshot import (
    ASSET_COLUMNS,
    HistoryWindow,
    InvalidSnapshot,
    Snapshot,
    parse_history,
    parse_snapshot,
)

log = logging.getLogger(__name__)

RAW_SCHEMA = "raw"

DUCKDB_DDL = f"""
create schema if not exists {RAW_SCHEMA};
create table if not exists {RAW_SCHEMA}.coincap_assets (
    snapshot_at timestamp not null,      -- the API's `timestamp`, UTC
    id varchar not null,
    rank integer not null,
    symbol varchar,
    name varchar,
    supply double,
    max_supply double,
    market_cap_usd double,
    volume_usd_24hr double,
    price_usd double not null,
    change_percent_24hr double,
    vwap_24hr double,
    explorer varchar,
    source varchar not null,             -- coincap (live) or replay
    lake_path varchar not null,          -- the lake file these rows came from
    loaded_at timestamp not null         -- when this file was loaded, UTC
);
create table if not exists {RAW_SCHEMA}.coincap_history (
    coin_id varchar not null,
    interval varchar not null,           -- m5, h1 or d1, as asked of /assets/{{id}}/history
    point_at timestamp not null,         -- the point's `time`, UTC
    price_usd double not null,
    circulating_supply double,
    source varchar not null,
    lake_path varchar not null,
    loaded_at timestamp not null
);
create schema if not exists ops;
create table if not exists ops.dbt_results (  -- the last dbt build, for the health page
    run_at timestamp, node varchar, resource_type varchar, status varchar,
    seconds double, message varchar
);
create table if not exists {RAW_SCHEMA}.lake_files (
    lake_path varchar primary key,
    source varchar not null,
    snapshot_at timestamp not null,
    row_count integer not null,
    loaded_at timestamp not null
);
"""


@dataclass(frozen=True)
class DbtNodeResult:
    """One node of the last dbt build, kept for the app's health page."""

    node: str
    resource_type: str
    status: str
    seconds: float
    message: str | None


@dataclass(frozen=True)
class HistoryReport:
    """What a run summary shows: how much history there is and who moved most."""

    facts_rows: int
    snapshots: int
    latest_snapshot_at: datetime | None
    gainers: list[dict[str, object]]
    losers: list[dict[str, object]]


MOVERS_SQL = """
select rank, name, symbol, price_usd,
       coalesce(change_24h_pct, api_change_24h_pct) as change_24h_pct,
       volume_usd_24hr
from prod.mart_latest_ranking
where coalesce(change_24h_pct, api_change_24h_pct) is not null
order by coalesce(change_24h_pct, api_change_24h_pct) {direction}, rank
limit $limit
"""


class Warehouse(Protocol):
    """What the loader needs from a warehouse (DuckDB here; BigQuery behind the same calls)."""

    def loaded_paths(self) -> set[str]: ...

    def load_snapshot(self, lake_path: str, source: str, snapshot: Snapshot) -> int: ...

    def load_history(self, lake_path: str, key: HistoryKey, window: HistoryWindow) -> int: ...

    def history_report(self, movers: int) -> HistoryReport: ...

    def record_dbt_results(self, results: list[DbtNodeResult]) -> None: ...

    def apply_retention(self, days: int) -> int: ...

    def forget_loads(self) -> None: ...


@dataclass
class LoadResult:
    files_loaded: int = 0
    rows_loaded: int = 0
    files_already_loaded: int = 0
    failures: dict[str, str] = field(default_factory=dict)


class LoadError(RuntimeError):
    """Some lake files could not be loaded; the others were."""


def load_pending(lake: Lake, warehouse: Warehouse) -> LoadResult:
    """Load every lake snapshot the warehouse does not have yet, oldest first."""
    result = LoadResult()
    done = warehouse.loaded_paths()
    for lake_path in [*lake.list_snapshots(), *lake.list_history()]:
        if lake_path in done:
            result.files_already_loaded += 1
            continue
        try:
            load_file = _prepare(lake, lake_path)
        except (InvalidSnapshot, OSError, EOFError, ValueError) as exc:
            # Never skip silently: the file stays pending and the run fails at the end.
            log.error("lake file %s cannot be loaded: %s", lake_path, exc)
            result.failures[lake_path] = str(exc)
            continue
        rows = load_file(warehouse)
        result.files_loaded += 1
        result.rows_loaded += rows
        log.info("loaded %s: %d rows", lake_path, rows)
    if result.failures:
        raise LoadError(
            f"{len(result.failures)} lake file(s) could not be loaded "
            f"({result.files_loaded} others were): {result.failures}"
        )
    return result


def _prepare(lake: Lake, lake_path: str) -> Callable[[Warehouse], int]:
    """Read and validate a lake file; what is returned loads it (warehouse errors are not
    the file's fault, so they are raised, not counted as a bad file)."""
    raw = lake.read(lake_path)
    if "/history/" in lake_path:
        key, window = history_key(lake_path), parse_history(raw)
        return lambda warehouse: warehouse.load_history(lake_path, key, window)
    snapshot = parse_snapshot(raw)
    return lambda warehouse: warehouse.load_snapshot(lake_path, source_of(lake_path), snapshot)


class DuckDBWarehouse:
    """The local warehouse: one DuckDB file. Hold it only as long as a step needs it:
    DuckDB allows one writing process per file."""

    def __init__(self, path: Path, memory_limit: str | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        config = {"memory_limit": memory_limit} if memory_limit else {}
        self.con = duckdb.connect(str(path), config=config)
        self.con.execute(DUCKDB_DDL)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    def loaded_paths(self) -> set[str]:
        rows = self.con.execute(f"select lake_path from {RAW_SCHEMA}.lake_files").fetchall()
        return {path for (path,) in rows}

    def history_report(self, movers: int = 5) -> HistoryReport:
        """Read the prod models for a run summary."""
        rows, snapshots, latest = self.con.execute(
            "select (select count(*) from prod.facts_coins), count(*), max(snapshot_at) "
            "from prod.mart_market_overview"
        ).fetchall()[0]

        def movers_by(direction: str) -> list[dict[str, object]]:
            cursor = self.con.execute(MOVERS_SQL.format(direction=direction), {"limit": movers})
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        return HistoryReport(rows, snapshots, latest, movers_by("desc"), movers_by("asc"))

    def record_dbt_results(self, results: list[DbtNodeResult]) -> None:
        """Replace `ops.dbt_results` with the latest build's nodes."""
        run_at = datetime.now(tz=UTC).replace(tzinfo=None)
        self.con.execute("begin transaction")
        self.con.execute("delete from ops.dbt_results")
        if results:
            self.con.executemany(
                "insert into ops.dbt_results values (?, ?, ?, ?, ?, ?)",
                [
                    (run_at, r.node, r.resource_type, r.status, r.seconds, r.message)
                    for r in results
                ],
            )
        self.con.execute("commit")

    def apply_retention(self, days: int) -> int:
        """Drop 5-minute rows older than `days` before the newest snapshot, from the raw
        table and the fact, but only rows whose hour and day are in the rollups."""
        horizon = self.con.execute(
            "select max(snapshot_at) - to_days($days) from prod.facts_coins", {"days": days}
        ).fetchall()[0][0]
        if horizon is None:
            return 0
        covered = """
            snapshot_at < $horizon
            and exists (
                select 1 from prod.mart_coin_hourly as hourly
                where hourly.coin_id = {id}
                  and hourly.bucket_at = date_trunc('hour', snapshot_at))
            and exists (
                select 1 from prod.mart_coin_daily as daily
                where daily.coin_id = {id}
                  and daily.bucket_at = date_trunc('day', snapshot_at))
        """
        self.con.execute("begin transaction")
        dropped = self.con.execute(
            f"delete from prod.facts_coins where {covered.format(id='facts_coins.coin_id')}",
            {"horizon": horizon},
        ).fetchall()[0][0]
        self.con.execute(
            f"delete from {RAW_SCHEMA}.coincap_assets "
            f"where {covered.format(id='coincap_assets.id')}",
            {"horizon": horizon},
        )
        self.con.execute("commit")
        return dropped

    def forget_loads(self) -> None:
        """Empty the raw tables and the manifest, so the next load reads the whole lake again
        (the way back from retention: reload, then `transform --full-refresh`)."""
        self.con.execute("begin transaction")
        for table in ("coincap_assets", "coincap_history", "lake_files"):
            self.con.execute(f"delete from {RAW_SCHEMA}.{table}")
        self.con.execute("commit")

    def load_history(self, lake_path: str, key: HistoryKey, window: HistoryWindow) -> int:
        """Insert one backfill window and its manifest entry in one transaction."""
        batch = pa.table(
            {
                "point_at": pa.array([p.time_ms for p in window.points], pa.timestamp("ms")),
                "price_usd": pa.array([p.price_usd for p in window.points], pa.float64()),
                "circulating_supply": pa.array(
                    [p.circulating_supply for p in window.points], pa.float64()
                ),
            }
        )
        insert = (
            f"insert into {RAW_SCHEMA}.coincap_history select $coin_id, $interval, point_at, "
            "price_usd, circulating_supply, $source, $lake_path, $loaded_at from incoming"
        )
        extra = {"coin_id": key.coin_id, "interval": key.interval}
        return self._load_file(lake_path, key.source, key.start_ms, batch, insert, extra)

    def load_snapshot(self, lake_path: str, source: str, snapshot: Snapshot) -> int:
        """Insert one snapshot and its manifest entry in one transaction."""
        count = len(snapshot.assets)
        batch = pa.table(
            {
                "snapshot_at": pa.array([snapshot.timestamp_ms] * count, pa.timestamp("ms")),
                **{name: values for name, values in snapshot.columns().items()},
            }
        )
        columns = ", ".join(("snapshot_at", *ASSET_COLUMNS))
        insert = (
            f"insert into {RAW_SCHEMA}.coincap_assets ({columns}, source, lake_path, loaded_at) "
            f"select {columns}, $source, $lake_path, $loaded_at from incoming"
        )
        return self._load_file(lake_path, source, snapshot.timestamp_ms, batch, insert, {})

    def _load_file(
        self,
        lake_path: str,
        source: str,
        file_time_ms: int,
        batch: pa.Table,
        insert: str,
        extra: dict[str, object],
    ) -> int:
        """`insert` the rows registered as `incoming` and the manifest entry, all or nothing."""
        loaded_at = datetime.now(tz=UTC).replace(tzinfo=None)
        params = {"source": source, "lake_path": lake_path, "loaded_at": loaded_at}
        self.con.execute("begin transaction")
        try:
            self.con.register("incoming", batch)
            self.con.execute(insert, {**params, **extra})
            self.con.execute(
                f"insert into {RAW_SCHEMA}.lake_files values "
                "($lake_path, $source, make_timestamp($file_time * 1000), $rows, $loaded_at)",
                {**params, "file_time": file_time_ms, "rows": batch.num_rows},
            )
            self.con.execute("commit")
        except BaseException:
            self.con.execute("rollback")
            raise
        finally:
            self.con.unregister("incoming")
        return batch.num_rows
