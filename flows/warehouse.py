"""Loading lake files into the warehouse, exactly once, and no file can stop the others.

The loader does not trust a `max(timestamp)` watermark (late and backfilled files would be
skipped). The warehouse keeps a manifest of loaded lake files, `raw.lake_files`; each run
loads every lake file missing from it. A file's rows and its manifest entry are committed in
one transaction, so a crash at any point leaves the file either wholly loaded or not at all,
and the next run finishes the work.

Each loaded file gets the next `load_seq`, a number that only grows (the loader runs under
the pipeline lock, one file at a time). Every row carries it, and the dbt models and the
publish step pick up "what is new" by it, never by comparing a timestamp with the clock: a
tick on a clock hours fast or minutes slow cannot hide a later file. The manifest also keeps
each file's stored size and SHA-256, so a file altered or deleted after loading is noticed
(`python -m flows.load --verify`).

A file that cannot be loaded (unreadable bytes, a body that fails validation, rows the
warehouse refuses, the wrong kind of data for this warehouse) is a dead letter: moved to the
lake's quarantine with its reason, recorded in `ops.dead_letters` (the health page), and
loading goes on with the next file. Single assets validation leaves out are recorded there
too.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, Self

import duckdb
import pyarrow as pa

from flows.lake import HistoryKey, Lake, LakeFileUnreadable, StoredFile, history_key, source_of
from flows.snapshot import (
    ASSET_COLUMNS,
    HistoryWindow,
    InvalidSnapshot,
    Snapshot,
    parse_history,
    parse_snapshot,
    safe_text,
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
    loaded_at timestamp not null,        -- when this file was loaded, UTC (data, not a watermark)
    load_seq bigint                      -- the file's place in load order: the watermark
);
create table if not exists {RAW_SCHEMA}.coincap_history (
    coin_id varchar not null,
    interval varchar not null,           -- m5, h1 or d1, as asked of /assets/{{id}}/history
    point_at timestamp not null,         -- the point's `time`, UTC
    price_usd double not null,
    circulating_supply double,
    source varchar not null,
    lake_path varchar not null,
    loaded_at timestamp not null,
    load_seq bigint
);
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
create table if not exists {RAW_SCHEMA}.lake_files (
    lake_path varchar primary key,
    source varchar not null,
    snapshot_at timestamp not null,
    row_count integer not null,
    loaded_at timestamp not null,
    load_seq bigint,                     -- 1, 2, 3... in load order; never given out twice
    size_bytes bigint,                   -- the stored (gzip) file, to notice later changes
    sha256 varchar
);
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
-- columns added since the first release (a warehouse made then gets them here)
alter table {RAW_SCHEMA}.coincap_assets add column if not exists load_seq bigint;
alter table {RAW_SCHEMA}.coincap_history add column if not exists load_seq bigint;
alter table {RAW_SCHEMA}.lake_files add column if not exists load_seq bigint;
alter table {RAW_SCHEMA}.lake_files add column if not exists size_bytes bigint;
alter table {RAW_SCHEMA}.lake_files add column if not exists sha256 varchar;
"""

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
update {RAW_SCHEMA}.coincap_assets as rows set load_seq = manifest.load_seq
from {RAW_SCHEMA}.lake_files as manifest
where manifest.lake_path = rows.lake_path and rows.load_seq is null;
update {RAW_SCHEMA}.coincap_history as rows set load_seq = manifest.load_seq
from {RAW_SCHEMA}.lake_files as manifest
where manifest.lake_path = rows.lake_path and rows.load_seq is null;
update {RAW_SCHEMA}.load_sequence
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


@dataclass(frozen=True)
class DbtNodeResult:
    """One node of the last dbt build, kept for the app's health page."""

    node: str
    resource_type: str
    status: str
    seconds: float
    message: str | None
    failures_relation: str | None = None  # where a failing test stored its rows, if it did


@dataclass(frozen=True)
class AuditCheck:
    """One check of the scheduled audit: a dbt test on a whole table, or the lake's digests."""

    check: str
    status: str  # pass, fail, warn, error
    message: str | None = None


@dataclass(frozen=True)
class BuildScope:
    """What a build is to test: rows above `after_seq` (the last passing build's cover) up
    to `covered_seq` (the highest loaded when it starts)."""

    after_seq: int
    covered_seq: int


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


@dataclass(frozen=True)
class DeadLetter:
    """Something a stage refused: a lake file (moved to quarantine) or one asset of one."""

    stage: str
    source: str | None
    item: str
    reason: str
    kept_at: str | None = None

    def __post_init__(self) -> None:
        for name in ("item", "reason", "kept_at", "source", "stage"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, safe_text(value)[:2000])

    @property
    def key(self) -> str:
        """The same refusal recorded twice (a rerun after a crash) is one entry; refusals
        kept apart (two bodies of the same endpoint) are two."""
        identity = f"{self.stage}|{self.item}|{self.reason}|{self.kept_at}"
        return hashlib.sha256(identity.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class ManifestEntry:
    lake_path: str
    size_bytes: int | None  # None: loaded before digests were kept
    sha256: str | None


class WarehouseRefused(ValueError):
    """The warehouse would not store this file's rows (its data, not the warehouse, is at
    fault): the file is a dead letter, and the load goes on."""


class Warehouse(Protocol):
    """What the loader needs from a warehouse (DuckDB here; BigQuery behind the same calls)."""

    def loaded_paths(self) -> set[str]: ...

    def manifest(self) -> list[ManifestEntry]: ...

    def data_sources(self) -> set[str]: ...

    def load_snapshot(self, stored: StoredFile, source: str, snapshot: Snapshot) -> int: ...

    def load_history(self, stored: StoredFile, key: HistoryKey, window: HistoryWindow) -> int: ...

    def record_dead_letters(self, letters: list[DeadLetter]) -> int: ...

    def recorded_quarantine(self) -> set[str]: ...

    def build_scope(self) -> BuildScope: ...

    def record_dbt_results(
        self, results: list[DbtNodeResult], scope: BuildScope | None = None
    ) -> None: ...

    def failing_lake_paths(self, relations: list[str], after_seq: int) -> set[str]: ...

    def record_audit(self, checks: list[AuditCheck]) -> None: ...

    def forget_file(self, lake_path: str) -> None: ...

    def models_predate_load_seq(self) -> bool: ...

    def history_report(self, movers: int) -> HistoryReport: ...

    def apply_retention(self, days: int) -> int: ...

    def forget_loads(self) -> None: ...


@dataclass
class LoadResult:
    files_loaded: int = 0
    rows_loaded: int = 0
    files_already_loaded: int = 0
    # lake file -> why it was moved to quarantine instead of loaded
    dead_lettered: dict[str, str] = field(default_factory=dict)
    rows_rejected: int = 0  # single assets left out by validation, each recorded
    unknown_files: list[str] = field(default_factory=list)  # names not of the lake's layout
    # lake file -> why it could not be read this run (I/O, not content: retried next run)
    unreadable: dict[str, str] = field(default_factory=dict)
    temporary_files_removed: int = 0


class SourceMismatch(ValueError):
    """Live and replayed data never share a warehouse."""


def source_mismatch(file_source: str, warehouse_sources: set[str]) -> str | None:
    """Why a file of `file_source` may not join a warehouse holding `warehouse_sources`."""
    other = warehouse_sources - {file_source}
    if not other:
        return None
    if file_source == "replay":
        return (
            "this warehouse holds live CoinCap data, and replayed 2021 rows would mix with it "
            "(a run without CRYPTOLYTICS_COINCAP_API_KEY falls back to the replay)"
        )
    return (
        "this warehouse holds the replay of 2021 data; live CoinCap rows need a warehouse of "
        "their own (a new CRYPTOLYTICS_LAKE_URL and CRYPTOLYTICS_DUCKDB_PATH, or `make clean`)"
    )


def load_pending(lake: Lake, warehouse: Warehouse) -> LoadResult:
    """Load every lake file the warehouse does not have yet, oldest first; a file that
    cannot be loaded is moved aside with its reason and the next one is loaded."""
    result = LoadResult()
    scan = lake.scan()
    result.temporary_files_removed = lake.clean_temporary(scan.temporary)
    result.unknown_files = scan.unknown
    for name in scan.unknown:
        log.warning("lake file %s does not fit the lake's layout: skipped (not loaded)", name)
    record_quarantine_notes(lake, warehouse)
    done = warehouse.loaded_paths()
    sources = warehouse.data_sources()
    for lake_path in [*scan.snapshots, *scan.history]:
        if lake_path in done:
            result.files_already_loaded += 1
            continue
        try:
            mismatch = source_mismatch(source_of(lake_path), sources)
            if mismatch:
                raise SourceMismatch(mismatch)
            stored = lake.read_stored(lake_path)
            load_file, rejected = _prepare(stored)
            rows = load_file(warehouse)
        except (InvalidSnapshot, LakeFileUnreadable, WarehouseRefused, SourceMismatch) as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            _dead_letter(lake, warehouse, lake_path, "load", reason)
            result.dead_lettered[lake_path] = reason
            continue
        except FileNotFoundError:
            log.warning("lake file %s disappeared before it was loaded", lake_path)
            continue
        except OSError as exc:  # the disk or the network, not the file: try again next run
            log.error("lake file %s could not be read this time: %s", lake_path, exc)
            result.unreadable[lake_path] = f"{exc.__class__.__name__}: {exc}"
            continue
        sources.add(source_of(lake_path))
        if rejected:
            warehouse.record_dead_letters(
                [DeadLetter("load", source_of(lake_path), lake_path, why) for why in rejected]
            )
            result.rows_rejected += len(rejected)
            log.warning(
                "%s: %d asset(s) left out by validation: %s",
                lake_path,
                len(rejected),
                "; ".join(rejected[:5]),
            )
        result.files_loaded += 1
        result.rows_loaded += rows
        log.info("loaded %s: %d rows", lake_path, rows)
    return result


def _dead_letter(lake: Lake, warehouse: Warehouse, lake_path: str, stage: str, reason: str) -> None:
    """Quarantine copy and note, then the warehouse's record, then the original removed:
    a crash anywhere in between is finished by the next run (same names, same key)."""
    log.error("lake file %s refused at %s, moved to quarantine: %s", lake_path, stage, reason)
    kept = lake.dead_letter(lake_path, stage, reason)
    warehouse.record_dead_letters(
        [DeadLetter(stage, source_of(lake_path), lake_path, reason, kept)]
    )


def record_quarantine_notes(lake: Lake, warehouse: Warehouse) -> int:
    """Index every note of the lake's quarantine (the fetch stage writes them without a
    warehouse) in `ops.dead_letters`; known ones are ignored."""
    letters = []
    for kept_at, note in lake.quarantine_notes(skip=warehouse.recorded_quarantine()):
        parts = kept_at.split("/")
        source = parts[1] if len(parts) > 1 else None
        stage = str(note.get("stage") or (parts[2] if len(parts) > 2 else "fetch"))
        item = str(note.get("lake_path") or note.get("window") or note.get("endpoint") or kept_at)
        letters.append(DeadLetter(stage, source, item, str(note.get("reason", "?")), kept_at))
    recorded = 0
    for letter in letters:  # one by one: a note that cannot be recorded stops no other
        try:
            recorded += warehouse.record_dead_letters([letter])
        except Exception as exc:
            log.error("quarantine note %s could not be recorded: %s", letter.kept_at, exc)
    return recorded


def _prepare(stored: StoredFile) -> tuple[Callable[[Warehouse], int], tuple[str, ...]]:
    """Validate a lake file; what is returned loads it, with the assets validation left out
    (warehouse errors other than refusals are raised: not the file's fault)."""
    lake_path = stored.path
    if "/history/" in lake_path:
        key = history_key(lake_path)
        window = parse_history(stored.body, window=(key.start_ms, key.end_ms))
        return lambda warehouse: warehouse.load_history(stored, key, window), window.rejected
    snapshot = parse_snapshot(stored.body)
    source = source_of(lake_path)
    return lambda warehouse: warehouse.load_snapshot(stored, source, snapshot), snapshot.rejected


@dataclass
class VerifyReport:
    """The lake against the manifest: what a `--reload` would not reproduce."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)  # loaded, gone from the lake
    altered: list[str] = field(default_factory=list)  # loaded, bytes changed since
    not_loaded: list[str] = field(default_factory=list)  # in the lake, not in the manifest
    without_digest: int = 0  # loaded before digests were kept: existence checked only
    unknown: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.altered)


def verify_lake(lake: Lake, warehouse: Warehouse) -> VerifyReport:
    """Read every loaded file again and compare its size and SHA-256 with the manifest."""
    report = VerifyReport()
    scan = lake.scan()
    report.unknown = scan.unknown
    in_lake = set(scan.snapshots) | set(scan.history)
    entries = warehouse.manifest()
    for entry in entries:
        report.checked += 1
        digest = lake.stored_digest(entry.lake_path)
        if digest is None:
            report.missing.append(entry.lake_path)
        elif entry.sha256 is None:
            report.without_digest += 1
        elif digest != (entry.size_bytes, entry.sha256):
            report.altered.append(entry.lake_path)
    known = {entry.lake_path for entry in entries}
    report.not_loaded = sorted(in_lake - known)
    return report


class DuckDBWarehouse:
    """The local warehouse: one DuckDB file. Hold it only as long as a step needs it:
    DuckDB allows one writing process per file."""

    def __init__(self, path: Path, memory_limit: str | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        config = {"memory_limit": memory_limit} if memory_limit else {}
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

    def record_dbt_results(
        self, results: list[DbtNodeResult], scope: BuildScope | None = None
    ) -> None:
        """Replace `ops.dbt_results` with the latest build's nodes; with `scope`, add the
        build to `ops.builds` (a passing one moves the next build's test scope on)."""
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
                "insert into ops.builds values (?, ?, ?, ?)",
                [run_at, scope.covered_seq, not failed, ", ".join(failed) or None],
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
        (covered,) = self.con.execute(
            f"select coalesce(max(load_seq), 0) from {RAW_SCHEMA}.lake_files"
        ).fetchall()[0]
        return BuildScope(after_seq=after, covered_seq=covered)

    def failing_lake_paths(self, relations: list[str], after_seq: int) -> set[str]:
        """The lake files behind the failing rows the staging gate stored, among the rows
        loaded after `after_seq` (the build's own)."""
        paths: set[str] = set()
        for relation in relations:
            rows = self.con.execute(
                f"select distinct lake_path from {relation} "
                "where lake_path is not null and load_seq > $after",
                {"after": after_seq},
            ).fetchall()
            paths |= {path for (path,) in rows}
        return paths

    def forget_file(self, lake_path: str) -> None:
        """Remove one file's rows and manifest entry (it moved to quarantine): one
        transaction, so a crash leaves it loaded or gone, never half."""
        self.con.execute("begin transaction")
        self.con.execute(DUCKDB_KEEP_ISSUED)
        for table in ("coincap_assets", "coincap_history", "lake_files"):
            self.con.execute(
                f"delete from {RAW_SCHEMA}.{table} where lake_path = $path", {"path": lake_path}
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
        for table in ("coincap_assets", "coincap_history", "lake_files"):
            self.con.execute(f"delete from {RAW_SCHEMA}.{table}")
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
        count = len(snapshot.assets)
        batch = _arrow(
            lambda: {
                "snapshot_at": pa.array([snapshot.timestamp_ms] * count, pa.timestamp("ms")),
                **{name: values for name, values in snapshot.columns().items()},
            }
        )
        columns = ", ".join(("snapshot_at", *ASSET_COLUMNS))
        insert = (
            f"insert into {RAW_SCHEMA}.coincap_assets "
            f"({columns}, source, lake_path, loaded_at, load_seq) "
            f"select {columns}, $source, $lake_path, $loaded_at, $load_seq from incoming"
        )
        return self._load_file(stored, source, snapshot.timestamp_ms, batch, insert, {})

    def _load_file(
        self,
        stored: StoredFile,
        source: str,
        file_time_ms: int,
        batch: pa.Table,
        insert: str,
        extra: dict[str, object],
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
