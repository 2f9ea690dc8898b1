"""The local warehouse: one DuckDB file holding the raw tables, the manifest of loaded lake
files and the ops tables of the health page. It implements `flows.core.loading.Warehouse`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self

import duckdb
import pyarrow as pa

from flows.core.lake_layout import (
    HistoryKey,
    StoredFile,
)
from flows.core.loading import (
    AuditCheck,
    BuildScope,
    DbtNodeResult,
    DeadLetter,
    HistoryReport,
    ManifestEntry,
    WarehouseRefused,
    recent_since,
)
from flows.core.queries import MoverFilter, movers_sql
from flows.core.rates import RATE_COLUMNS, RatesSnapshot
from flows.core.raw_schema import DATA_TABLES, MANIFEST, RAW_TABLES, Kind, RawTable
from flows.core.snapshot import (
    ASSET_COLUMNS,
    HistoryWindow,
    Snapshot,
)

log = logging.getLogger(__name__)

RAW_SCHEMA = "raw"

DUCKDB_TYPES: dict[Kind, str] = {
    "text": "varchar",
    "integer": "integer",
    "bigint": "bigint",
    "double": "double",
    "timestamp": "timestamp",
}


def create_table_sql(schema: str, table: RawTable) -> str:
    """`flows.core.raw_schema`'s declaration as DuckDB DDL."""
    columns = [
        f"    {column.name} {DUCKDB_TYPES[column.kind]}"
        + (" primary key" if column.name == table.primary_key else "")
        + (" not null" if column.required and column.name != table.primary_key else "")
        for column in table.columns
    ]
    return f"create table if not exists {schema}.{table.name} (\n" + ",\n".join(columns) + "\n);"


RAW_TABLES_DDL = "\n".join(create_table_sql(RAW_SCHEMA, table) for table in RAW_TABLES)
# Columns added since the first release are optional ones: a warehouse made before gets them.
RAW_COLUMNS_ADDED = "\n".join(
    f"alter table {RAW_SCHEMA}.{table.name} add column if not exists "
    f"{column.name} {DUCKDB_TYPES[column.kind]};"
    for table in RAW_TABLES
    for column in table.columns
    if not column.required
)

DUCKDB_DDL = f"""
create schema if not exists {RAW_SCHEMA};
{RAW_TABLES_DDL}
create schema if not exists ops;
create table if not exists ops.dbt_results (  -- the last dbt build, for the health page
    run_at timestamp, node varchar, resource_type varchar, status varchar,
    seconds double, message varchar
);
create table if not exists ops.audit (  -- the last whole-table audit (flows/audit.py)
    run_at timestamp not null, check_name varchar not null, status varchar not null,
    message varchar
);
create table if not exists ops.warehouse_info as  -- who this warehouse is, made once
select cast(uuid() as varchar) as warehouse_id, current_timestamp as created_at;
create table if not exists ops.builds (  -- every build: what it covered, and whether it passed
    run_at timestamp not null,
    covered_seq bigint not null,         -- the highest load_seq loaded when it started
    success boolean not null,
    failed varchar                       -- the failing nodes, if any
);
-- the dbt project a build of every node ran (its fingerprint); null for a tick's selection
alter table ops.builds add column if not exists whole_project varchar;
create table if not exists ops.dead_letters (  -- what a stage refused, and why
    dead_letter_id varchar primary key,
    recorded_at timestamp not null,
    stage varchar not null,              -- fetch, load, build, backfill
    source varchar,
    item varchar not null,               -- the lake file (or asset) refused
    reason varchar not null,
    kept_at varchar                      -- where the body is kept in the lake's quarantine
);
-- the highest load_seq ever given out, kept when files leave the manifest (a dead letter,
-- a --reload), so no number is ever given out twice
create table if not exists {RAW_SCHEMA}.load_sequence as select cast(0 as bigint) as issued;
{RAW_COLUMNS_ADDED}
"""

_NUMBER_OLD_ROWS = "".join(
    f"update {RAW_SCHEMA}.{table.name} as rows set load_seq = manifest.load_seq\n"
    f"from {RAW_SCHEMA}.lake_files as manifest\n"
    "where manifest.lake_path = rows.lake_path and rows.load_seq is null;\n"
    for table in DATA_TABLES
)
# Files loaded before `load_seq` existed get one in their load order, once, in one
# transaction (a crash halfway leaves them all unnumbered, and the next open starts again).
DUCKDB_NUMBER_OLD_LOADS = f"""
begin transaction;
update {RAW_SCHEMA}.lake_files as manifest set load_seq = numbered.seq
from (
    select lake_path, row_number() over (order by loaded_at, lake_path) as seq
    from {RAW_SCHEMA}.lake_files
) as numbered
where manifest.lake_path = numbered.lake_path;
{_NUMBER_OLD_ROWS}update {RAW_SCHEMA}.load_sequence
set issued = greatest(issued, (select coalesce(max(load_seq), 0) from {RAW_SCHEMA}.lake_files));
commit;
"""
# The next number: above everything in the manifest and everything ever given out.
DUCKDB_NEXT_SEQ = f"""
select greatest(
    (select coalesce(max(load_seq), 0) from {RAW_SCHEMA}.lake_files),
    (select max(issued) from {RAW_SCHEMA}.load_sequence)
) + 1
"""
# Before files leave the manifest: remember the numbers they had.
DUCKDB_KEEP_ISSUED = f"""
update {RAW_SCHEMA}.load_sequence
set issued = greatest(issued, (select coalesce(max(load_seq), 0) from {RAW_SCHEMA}.lake_files))
"""


class DuckDBWarehouse:
    """The local warehouse: one DuckDB file. Hold it only as long as a step needs it:
    DuckDB allows one writing process per file."""

    supports_retention = True

    def __init__(self, path: Path, memory_limit: str | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        config: dict[str, str | bool | int | float | list[str]] = (
            {"memory_limit": memory_limit} if memory_limit else {}
        )
        self.con = duckdb.connect(str(path), config=config)
        self.con.execute(DUCKDB_DDL)
        # the numbering is one transaction: manifest numbered <=> rows numbered
        unnumbered = self.con.execute(
            f"select count(*) from {RAW_SCHEMA}.lake_files where load_seq is null"
        ).fetchall()[0][0]
        if unnumbered:
            self.con.execute(DUCKDB_NUMBER_OLD_LOADS)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    def loaded_paths(self) -> set[str]:
        rows = self.con.execute(f"select lake_path from {RAW_SCHEMA}.lake_files").fetchall()
        return {path for (path,) in rows}

    def manifest(self) -> list[ManifestEntry]:
        rows = self.con.execute(
            f"select lake_path, size_bytes, sha256 from {RAW_SCHEMA}.lake_files order by load_seq"
        ).fetchall()
        return [ManifestEntry(*row) for row in rows]

    def data_sources(self) -> set[str]:
        rows = self.con.execute(f"select distinct source from {RAW_SCHEMA}.lake_files").fetchall()
        return {source for (source,) in rows}

    def recorded_quarantine(self) -> set[str]:
        rows = self.con.execute(
            "select distinct kept_at from ops.dead_letters where kept_at is not null"
        ).fetchall()
        return {kept for (kept,) in rows}

    def record_dead_letters(self, letters: list[DeadLetter]) -> int:
        """Add refusals not recorded yet; returns how many were new."""
        now = datetime.now(tz=UTC).replace(tzinfo=None)
        before = self.con.execute("select count(*) from ops.dead_letters").fetchall()[0][0]
        self.con.executemany(
            "insert or ignore into ops.dead_letters values (?, ?, ?, ?, ?, ?, ?)",
            [(d.key, now, d.stage, d.source, d.item, d.reason, d.kept_at) for d in letters],
        )
        return self.con.execute("select count(*) from ops.dead_letters").fetchall()[0][0] - before

    def history_report(self, movers: int, mover_filter: MoverFilter) -> HistoryReport:
        """Read the prod models for a run summary."""
        rows, snapshots, latest = self.con.execute(
            "select (select count(*) from prod.facts_coins), "
            "(select count(*) from prod.mart_market_overview), max(snapshot_at) "
            "from prod.mart_latest_ranking"  # the latest snapshot: as on BigQuery
        ).fetchall()[0]

        def movers_by(direction: Literal["gainers", "losers"]) -> list[dict[str, object]]:
            cursor = self.con.execute(movers_sql(direction), mover_filter.params(movers))
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        return HistoryReport(rows, snapshots, latest, movers_by("gainers"), movers_by("losers"))

    def record_dbt_results(
        self,
        results: list[DbtNodeResult],
        scope: BuildScope | None = None,
        whole_project: str | None = None,
    ) -> None:
        """Replace `ops.dbt_results` with the latest build's nodes; with `scope`, add the
        build to `ops.builds` (a passing one moves the next build's test scope on), with
        the project's fingerprint when it built every node."""
        run_at = datetime.now(tz=UTC).replace(tzinfo=None)
        failed = [r.node for r in results if r.status in ("error", "fail")]
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
        if scope is not None:
            self.con.execute(
                "insert into ops.builds (run_at, covered_seq, success, failed, whole_project) "
                "values (?, ?, ?, ?, ?)",
                [run_at, scope.covered_seq, not failed, ", ".join(failed) or None, whole_project],
            )
        self.con.execute("commit")

    def record_audit(self, checks: list[AuditCheck]) -> None:
        """Replace `ops.audit` with this audit's checks."""
        run_at = datetime.now(tz=UTC).replace(tzinfo=None)
        self.con.execute("begin transaction")
        self.con.execute("delete from ops.audit")
        self.con.executemany(
            "insert into ops.audit values (?, ?, ?, ?)",
            [(run_at, c.check, c.status, c.message) for c in checks],
        )
        self.con.execute("commit")

    def build_scope(self) -> BuildScope:
        (after,) = self.con.execute(
            "select coalesce(max(covered_seq), 0) from ops.builds where success"
        ).fetchall()[0]
        covered, newest = self.con.execute(
            f"select coalesce(max(load_seq), 0), max(snapshot_at) from {RAW_SCHEMA}.lake_files"
        ).fetchall()[0]
        since = recent_since(newest)
        (older,) = self.con.execute(  # the last file about a time before the span
            f"select coalesce(max(load_seq), 0) from {RAW_SCHEMA}.lake_files "
            "where snapshot_at < $since",
            {"since": since.replace(tzinfo=None) if since else datetime(1970, 1, 1)},
        ).fetchall()[0]
        kinds = self.con.execute(  # raw/<source>/<kind>/...: flows/core/lake_layout.py
            f"select distinct split_part(lake_path, '/', 3) from {RAW_SCHEMA}.lake_files "
            "where load_seq > $after",
            {"after": after},
        ).fetchall()
        whole = self.con.execute(
            "select whole_project from ops.builds where success and whole_project is not null "
            "order by covered_seq desc, run_at desc limit 1"  # the load sequence, then the clock
        ).fetchall()
        return BuildScope(
            after_seq=after,
            covered_seq=covered,
            new_kinds=frozenset(kind for (kind,) in kinds),
            whole_project=whole[0][0] if whole else None,
            recent_since=since,
            recent_after_seq=older,
        )

    def failing_lake_paths(self, relations: list[str], after_seq: int) -> dict[str, set[str]]:
        """The lake files behind the failing rows the staging gate stored, among the rows
        loaded after `after_seq` (the build's own), with the rules those rows broke."""
        paths: dict[str, set[str]] = {}
        for relation in relations:
            rows = self.con.execute(
                f"select distinct lake_path, broken_rules from {relation} "
                "where lake_path is not null and load_seq > $after",
                {"after": after_seq},
            ).fetchall()
            for path, rules in rows:
                paths.setdefault(path, set()).update(rules.split())
        return paths

    def forget_file(self, lake_path: str) -> None:
        """Remove one file's rows and manifest entry (it moved to quarantine): one
        transaction, so a crash leaves it loaded or gone, never half."""
        self.con.execute("begin transaction")
        self.con.execute(DUCKDB_KEEP_ISSUED)
        for table in (*DATA_TABLES, MANIFEST):
            self.con.execute(
                f"delete from {RAW_SCHEMA}.{table.name} where lake_path = $path",
                {"path": lake_path},
            )
        self.con.execute("commit")

    def models_predate_load_seq(self) -> bool:
        """Models built by a release before load sequences: rebuild them once, in full."""
        (exists, has_column) = self.con.execute(
            "select count(*) > 0, count(*) filter (where column_name = 'load_seq') > 0 "
            "from duckdb_columns() where database_name = current_database() "
            "and schema_name = 'prod' and table_name = 'facts_coins'"
        ).fetchall()[0]
        return bool(exists and not has_column)

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
        self.con.execute(DUCKDB_KEEP_ISSUED)  # reloaded files get new, higher numbers
        for table in (*DATA_TABLES, MANIFEST):
            self.con.execute(f"delete from {RAW_SCHEMA}.{table.name}")
        self.con.execute("commit")

    def load_history(self, stored: StoredFile, key: HistoryKey, window: HistoryWindow) -> int:
        """Insert one backfill window and its manifest entry in one transaction."""
        batch = _arrow(
            lambda: {
                "point_at": pa.array([p.time_ms for p in window.points], pa.timestamp("ms")),
                "price_usd": pa.array([p.price_usd for p in window.points], pa.float64()),
                "circulating_supply": pa.array(
                    [p.circulating_supply for p in window.points], pa.float64()
                ),
            }
        )
        insert = (
            f"insert into {RAW_SCHEMA}.coincap_history select $coin_id, $interval, point_at, "
            "price_usd, circulating_supply, $source, $lake_path, $loaded_at, $load_seq "
            "from incoming"
        )
        extra = {"coin_id": key.coin_id, "interval": key.interval}
        return self._load_file(stored, key.source, key.start_ms, batch, insert, extra)

    def load_snapshot(self, stored: StoredFile, source: str, snapshot: Snapshot) -> int:
        """Insert one snapshot and its manifest entry in one transaction."""
        return self._load_tick(
            "coincap_assets", "snapshot_at", ASSET_COLUMNS, snapshot.columns(),
            stored, source, snapshot.timestamp_ms,
        )  # fmt: skip

    def load_rates(self, stored: StoredFile, source: str, rates: RatesSnapshot) -> int:
        """Insert one `/rates` answer and its manifest entry in one transaction."""
        return self._load_tick(
            "coincap_rates", "rates_at", RATE_COLUMNS, rates.columns(),
            stored, source, rates.timestamp_ms,
        )  # fmt: skip

    def _load_tick(
        self,
        table: str,
        time_column: str,
        columns: tuple[str, ...],
        values: dict[str, list[Any]],
        stored: StoredFile,
        source: str,
        timestamp_ms: int,
    ) -> int:
        """One tick's answer (`/assets` or `/rates`): its rows under the API's timestamp."""
        count = len(values[columns[0]])
        batch = _arrow(
            lambda: {
                time_column: pa.array([timestamp_ms] * count, pa.timestamp("ms")),
                **{name: values[name] for name in columns},
            }
        )
        listed = ", ".join((time_column, *columns))
        insert = (
            f"insert into {RAW_SCHEMA}.{table} ({listed}, source, lake_path, loaded_at, load_seq) "
            f"select {listed}, $source, $lake_path, $loaded_at, $load_seq from incoming"
        )
        return self._load_file(stored, source, timestamp_ms, batch, insert, {})

    def _load_file(
        self,
        stored: StoredFile,
        source: str,
        file_time_ms: int,
        batch: pa.Table,
        insert: str,
        extra: Mapping[str, object],
    ) -> int:
        """`insert` the rows registered as `incoming` and the manifest entry, all or nothing,
        under the next load sequence number."""
        loaded_at = datetime.now(tz=UTC).replace(tzinfo=None)
        self.con.execute("begin transaction")
        try:
            (seq,) = self.con.execute(DUCKDB_NEXT_SEQ).fetchall()[0]
            params = {
                "source": source,
                "lake_path": stored.path,
                "loaded_at": loaded_at,
                "load_seq": seq,
            }
            self.con.register("incoming", batch)
            self.con.execute(insert, {**params, **extra})
            self.con.execute(
                f"insert into {RAW_SCHEMA}.lake_files values ($lake_path, $source, "
                "make_timestamp($file_time * 1000), $rows, $loaded_at, $load_seq, $size, $sha)",
                {
                    **params,
                    "file_time": file_time_ms,
                    "rows": batch.num_rows,
                    "size": stored.size_bytes,
                    "sha": stored.sha256,
                },
            )
            self.con.execute("commit")
        except (duckdb.DataError, duckdb.IntegrityError, pa.ArrowException) as exc:
            self.con.execute("rollback")
            raise WarehouseRefused(f"DuckDB refused the rows: {str(exc)[:300]}") from None
        except BaseException:
            self.con.execute("rollback")
            raise
        finally:
            self.con.unregister("incoming")
        return batch.num_rows


def _arrow(columns: Callable[[], dict[str, object]]) -> pa.Table:
    """The rows as Arrow; values Arrow cannot hold are the file's fault."""
    try:
        return pa.table(columns())
    except (pa.ArrowException, UnicodeError, OverflowError) as exc:
        raise WarehouseRefused(f"the rows cannot be converted: {str(exc)[:300]}") from None
