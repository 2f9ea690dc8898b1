"""The cloud warehouse: BigQuery, behind the same `Warehouse` calls as DuckDB.

Exactly once without transactions across jobs: each lake file is staged as newline-delimited
JSON next to the lake (`staged/`) and loaded with one load job (atomic: all rows or none),
under a job id derived from the lake path, so BigQuery itself refuses a second load of the
same file (409). The manifest (`lake_files`) is then merged in. A crash between the two is
repaired by the next run: before loading a file missing from the manifest it counts the
file's rows already in the table (one partition, cheap) and only records them if present.
Every job runs in the configured location.

Load sequence: each file's rows and manifest entry carry the next `load_seq` (the manifest's
highest plus one; files load one at a time under the pipeline lock). A file repaired after a
crash keeps the number its rows were loaded with; it can share that number with the next
file loaded in the same catch-up, which is harmless: no build ran between them, so the next
build takes both.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Self, cast

import pandas as pd
import sqlglot
from google.api_core.exceptions import BadRequest, Conflict, NotFound
from google.auth.credentials import Credentials
from google.cloud import bigquery
from sqlglot import exp

from flows.adapters.lake import Lake
from flows.adapters.serving import SERVED_TABLES, NoDataYet
from flows.core.lake_layout import HistoryKey, StoredFile
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
from flows.core.queries import MoverFilter, QueryParams, movers_sql
from flows.core.rates import RATE_COLUMNS, RatesSnapshot
from flows.core.raw_schema import ASSETS, DATA_TABLES, HISTORY, MANIFEST, RATES, Kind, RawTable
from flows.core.settings import BIGQUERY_JOB_TIMEOUT_SECONDS, Settings
from flows.core.snapshot import ASSET_COLUMNS, HistoryWindow, Snapshot

S, F, INT, T = "STRING", "FLOAT64", "INT64", "TIMESTAMP"
REQUIRED, NULLABLE = "REQUIRED", "NULLABLE"

# BigQuery cancels a job that runs longer (and we stop waiting for it then too).
JOB_TIMEOUT_MS = BIGQUERY_JOB_TIMEOUT_SECONDS * 1000
logger = logging.getLogger(__name__)
_WARNED_LAYOUTS: set[str] = set()  # tables whose old partitioning was reported


def _fields(*columns: tuple[str, str, str]) -> list[bigquery.SchemaField]:
    return [bigquery.SchemaField(name, kind, mode=mode) for name, kind, mode in columns]


BIGQUERY_TYPES: dict[Kind, str] = {
    "text": S,
    "integer": INT,
    "bigint": INT,
    "double": F,
    "timestamp": T,
}


def raw_schema(table: RawTable) -> list[bigquery.SchemaField]:
    """`flows.core.raw_schema`'s declaration as a BigQuery schema."""
    return [
        bigquery.SchemaField(
            column.name, BIGQUERY_TYPES[column.kind], mode=REQUIRED if column.required else NULLABLE
        )
        for column in table.columns
    ]


DEAD_LETTERS_SCHEMA = _fields(
    ("dead_letter_id", S, REQUIRED), ("recorded_at", T, REQUIRED), ("stage", S, REQUIRED),
    ("source", S, NULLABLE), ("item", S, REQUIRED), ("reason", S, REQUIRED),
    ("kept_at", S, NULLABLE),
)  # fmt: skip
SEQUENCE_SCHEMA = _fields(("issued", INT, REQUIRED))
AUDIT_SCHEMA = _fields(
    ("run_at", T, REQUIRED), ("check_name", S, REQUIRED), ("status", S, REQUIRED),
    ("message", S, NULLABLE),
)  # fmt: skip
BUILDS_SCHEMA = _fields(
    ("run_at", T, REQUIRED), ("covered_seq", INT, REQUIRED), ("success", "BOOL", REQUIRED),
    ("failed", S, NULLABLE), ("whole_project", S, NULLABLE),
)  # fmt: skip
DBT_RESULTS_SCHEMA = _fields(
    ("run_at", T, NULLABLE), ("node", S, NULLABLE), ("resource_type", S, NULLABLE),
    ("status", S, NULLABLE), ("seconds", F, NULLABLE), ("message", S, NULLABLE),
)  # fmt: skip


def table_definition(table_id: str, raw: RawTable) -> bigquery.Table:
    table = bigquery.Table(table_id, schema=raw_schema(raw))
    table.time_partitioning = bigquery.TimePartitioning(type_=raw.partition, field=raw.time_column)
    table.clustering_fields = list(raw.cluster_by)
    return table


def load_job_id(table: str, lake_path: str, load_seq: int) -> str:
    """The same load of a file (its path and load number) is always the same job: BigQuery
    refuses a repeat. A reload of the file gets a new number, so a new job."""
    digest = hashlib.sha256(f"{lake_path}|{load_seq}".encode()).hexdigest()[:32]
    return f"cryptolytics_load_{table}_{digest}"


def _timestamp(value: datetime | int) -> str:
    moment = value if isinstance(value, datetime) else datetime.fromtimestamp(value / 1000, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _ndjson(rows: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(row, allow_nan=False).encode() + b"\n" for row in rows)


def _gzip(payload: bytes) -> bytes:
    """Staged load files are gzip (BigQuery reads gzip NDJSON from GCS): about 8x less to
    upload and keep until the bucket's lifecycle rule expires `staged/`."""
    return gzip.compress(payload, compresslevel=6, mtime=0)


class BigQueryDatasets:
    """The cloud `Warehouse`: raw tables and the manifest in the staging dataset, the ops
    tables in prod (not prefect-gcp's BigQueryWarehouse block: this one loads from the lake)."""

    supports_retention = False  # old partitions cost little; tables expire them by setting

    def __init__(
        self,
        client: bigquery.Client,
        lake: Lake,
        *,
        raw_dataset: str,
        prod_dataset: str,
        location: str,
    ) -> None:
        self.client, self.lake, self.location = client, lake, location
        self.raw = f"{client.project}.{raw_dataset}"
        self.prod = f"{client.project}.{prod_dataset}"
        for dataset in (self.raw, self.prod):
            self._ensure_dataset(dataset)
        for raw in (*DATA_TABLES, MANIFEST):
            self._ensure_table(table_definition(f"{self.raw}.{raw.name}", raw))
        if self._ensure_table(bigquery.Table(f"{self.raw}.load_sequence", SEQUENCE_SCHEMA)):
            self._query(f"insert into `{self.raw}.load_sequence` (issued) values (0)")
        self._number_old_loads()
        self._ensure_table(bigquery.Table(f"{self.prod}.ops_dead_letters", DEAD_LETTERS_SCHEMA))
        self._ensure_table(bigquery.Table(f"{self.prod}.ops_builds", BUILDS_SCHEMA))
        self._ensure_table(bigquery.Table(f"{self.prod}.ops_audit", AUDIT_SCHEMA))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    def _ensure_dataset(self, dataset_id: str) -> None:
        """Terraform creates the datasets; create one only where it is missing (emulators)."""
        try:
            self.client.get_dataset(dataset_id)
        except NotFound:
            dataset = bigquery.Dataset(dataset_id)
            dataset.location = self.location
            self.client.create_dataset(dataset, exists_ok=True)

    def _ensure_table(self, table: bigquery.Table) -> bool:
        """Create it (True), or add the nullable columns a newer release declares."""
        try:
            existing = self.client.get_table(table.reference)
        except NotFound:
            self.client.create_table(table, exists_ok=True)
            return True
        self._warn_of_old_layout(table, existing)
        have = {field.name for field in existing.schema}
        missing = [field for field in table.schema if field.name not in have]
        if missing:
            existing.schema = [*existing.schema, *missing]
            self.client.update_table(existing, ["schema"])
        return False

    @staticmethod
    def _warn_of_old_layout(table: bigquery.Table, existing: bigquery.Table) -> None:
        """A table made by an older release keeps its partitioning (BigQuery cannot change it
        in place): its rows stay right, each tick's reads of it cost more. Said once per
        table and process."""
        wanted, found = table.time_partitioning, existing.time_partitioning
        if wanted is None or table.table_id in _WARNED_LAYOUTS:
            return
        if found is None or (found.type_, found.field) != (wanted.type_, wanted.field):
            _WARNED_LAYOUTS.add(table.table_id)
            logger.warning(
                "%s is partitioned %s; this release declares %s partitions of %s: recreate "
                "it with that layout (bq cp its rows) to get its cost (README: Performance)",
                table.table_id,
                "not at all" if found is None else f"by {found.type_} of {found.field}",
                wanted.type_,
                wanted.field,
            )

    def _number_old_loads(self) -> None:
        """Files loaded before load sequences get numbers in their load order, once. The
        numbers are a pure function of the unnumbered manifest, so the rows are numbered
        first and the manifest last: a crash between is resumed with the same numbers."""
        (row,) = self._query(
            f"select count(*) as n from `{self.raw}.lake_files` where load_seq is null"
        )
        if not row.n:
            return
        numbered = f"""
            select lake_path, (select coalesce(max(load_seq), 0) from `{self.raw}.lake_files`)
                + row_number() over (order by loaded_at, lake_path) as seq
            from `{self.raw}.lake_files` where load_seq is null
        """
        for raw in DATA_TABLES:
            self._query(
                f"update `{self.raw}.{raw.name}` as rows set load_seq = numbered.seq "
                f"from ({numbered}) as numbered "
                "where rows.lake_path = numbered.lake_path and rows.load_seq is null"
            )
        self._query(
            f"merge `{self.raw}.lake_files` as manifest using ({numbered}) as numbered "
            "on manifest.lake_path = numbered.lake_path "
            "when matched then update set load_seq = numbered.seq"
        )

    def _query(self, sql: str, **params: Any) -> list[bigquery.Row]:
        config = bigquery.QueryJobConfig(
            query_parameters=[_parameter(name, value) for name, value in params.items()],
            job_timeout_ms=JOB_TIMEOUT_MS,
        )
        job = self.client.query(sql, job_config=config, location=self.location)
        return list(job.result(timeout=BIGQUERY_JOB_TIMEOUT_SECONDS))

    def loaded_paths(self) -> set[str]:
        return {
            row.lake_path for row in self._query(f"select lake_path from `{self.raw}.lake_files`")
        }

    def manifest(self) -> list[ManifestEntry]:
        rows = self._query(
            f"select lake_path, size_bytes, sha256 from `{self.raw}.lake_files` order by load_seq"
        )
        return [ManifestEntry(row.lake_path, row.size_bytes, row.sha256) for row in rows]

    def data_sources(self) -> set[str]:
        rows = self._query(f"select distinct source from `{self.raw}.lake_files`")
        return {row.source for row in rows}

    def recorded_quarantine(self) -> set[str]:
        rows = self._query(
            f"select distinct kept_at from `{self.prod}.ops_dead_letters` where kept_at is not null"
        )
        return {row.kept_at for row in rows}

    def record_dead_letters(self, letters: list[DeadLetter]) -> int:
        """Add refusals not recorded yet (a merge per letter: there are few)."""
        added = 0
        for letter in letters:
            job = self.client.query(
                f"""
                merge `{self.prod}.ops_dead_letters` as known
                using (select @id as dead_letter_id) as incoming
                on known.dead_letter_id = incoming.dead_letter_id
                when not matched then insert
                    (dead_letter_id, recorded_at, stage, source, item, reason, kept_at)
                values (@id, current_timestamp(), @stage, @source, @item, @reason, @kept_at)
                """,
                job_config=bigquery.QueryJobConfig(
                    job_timeout_ms=JOB_TIMEOUT_MS,
                    query_parameters=[
                        bigquery.ScalarQueryParameter("id", "STRING", letter.key),
                        bigquery.ScalarQueryParameter("stage", "STRING", letter.stage),
                        bigquery.ScalarQueryParameter("source", "STRING", letter.source),
                        bigquery.ScalarQueryParameter("item", "STRING", letter.item),
                        bigquery.ScalarQueryParameter("reason", "STRING", letter.reason),
                        bigquery.ScalarQueryParameter("kept_at", "STRING", letter.kept_at),
                    ],
                ),
                location=self.location,
            )
            job.result(timeout=BIGQUERY_JOB_TIMEOUT_SECONDS)
            added += job.num_dml_affected_rows or 0
        return added

    def load_snapshot(self, stored: StoredFile, source: str, snapshot: Snapshot) -> int:
        return self._load_tick(
            ASSETS, "snapshot_at", ASSET_COLUMNS, snapshot.assets,
            stored, source, snapshot.timestamp_ms,
        )  # fmt: skip

    def load_rates(self, stored: StoredFile, source: str, rates: RatesSnapshot) -> int:
        return self._load_tick(
            RATES, "rates_at", RATE_COLUMNS, rates.rates, stored, source, rates.timestamp_ms
        )

    def _load_tick(
        self,
        raw: RawTable,
        time_column: str,
        columns: tuple[str, ...],
        items: Sequence[object],
        stored: StoredFile,
        source: str,
        timestamp_ms: int,
    ) -> int:
        """One tick's answer (`/assets` or `/rates`): its rows under the API's timestamp,
        in that day's partition."""
        loaded_at = datetime.now(tz=UTC)
        taken_at = _timestamp(timestamp_ms)

        def rows(seq: int) -> Iterable[dict[str, Any]]:
            for item in items:
                yield {
                    time_column: taken_at,
                    **{name: getattr(item, name) for name in columns},
                    "source": source,
                    "lake_path": stored.path,
                    "loaded_at": _timestamp(loaded_at),
                    "load_seq": seq,
                }

        start = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
        return self._load_file(raw, stored, source, timestamp_ms, rows, loaded_at, (start, start))

    def load_history(self, stored: StoredFile, key: HistoryKey, window: HistoryWindow) -> int:
        loaded_at = datetime.now(tz=UTC)

        def rows(seq: int) -> Iterable[dict[str, Any]]:
            for point in window.points:
                yield {
                    "coin_id": key.coin_id,
                    "interval": key.interval,
                    "point_at": _timestamp(point.time_ms),
                    "price_usd": point.price_usd,
                    "circulating_supply": point.circulating_supply,
                    "source": key.source,
                    "lake_path": stored.path,
                    "loaded_at": _timestamp(loaded_at),
                    "load_seq": seq,
                }

        span = (
            datetime.fromtimestamp(key.start_ms / 1000, UTC),
            datetime.fromtimestamp(key.end_ms / 1000, UTC),
        )
        return self._load_file(HISTORY, stored, key.source, key.start_ms, rows, loaded_at, span)

    def _load_file(
        self,
        raw: RawTable,
        stored: StoredFile,
        source: str,
        file_time_ms: int,
        rows: Callable[[int], Iterable[dict[str, Any]]],
        loaded_at: datetime,
        span: tuple[datetime, datetime],
    ) -> int:
        """Load the file's rows unless a previous run did, then record it in the manifest."""
        table = f"{self.raw}.{raw.name}"
        lake_path = stored.path
        # rows of this file already there: loaded by a run that died before the manifest
        (already,) = self._query(
            f"select count(*) as n, max(load_seq) as seq from `{table}` "
            f"where lake_path = @lake_path and {raw.time_column} between @start and @end",
            lake_path=lake_path,
            start=span[0],
            end=span[1] + timedelta(microseconds=1),
        )
        count, seq = already.n, already.seq
        (row,) = self._query(
            f"select greatest((select coalesce(max(load_seq), 0) from `{self.raw}.lake_files`),"
            f" (select coalesce(max(issued), 0) from `{self.raw}.load_sequence`)) + 1 as seq"
        )
        if count and (seq is None or seq < row.seq):
            # Rows a dead run loaded, and files were numbered since: a model may already have
            # passed their number (and a build's recent span cannot know their time), so they
            # take a new one, as a file loaded now would. A merge on BigQuery takes rows again
            # idempotently, so a model that did read them is not doubled.
            self._query(
                f"update `{table}` set load_seq = @seq "
                f"where lake_path = @lake_path and {raw.time_column} between @start and @end",
                seq=row.seq,
                lake_path=lake_path,
                start=span[0],
                end=span[1] + timedelta(microseconds=1),
            )
        if count == 0 or seq is None or seq < row.seq:
            seq = row.seq
        if count == 0:
            try:
                batch = _ndjson(rows(seq))
            except ValueError as exc:  # a value JSON cannot carry
                raise WarehouseRefused(f"the rows cannot be written as JSON: {exc}") from None
            uri = self.lake.stage(lake_path, f".{raw.name}.ndjson.gz", _gzip(batch))
            self._run_load_job(raw, table, uri, lake_path, seq)
            count = batch.count(b"\n")
        self._query(
            f"""
            merge `{self.raw}.lake_files` as manifest
            using (select @lake_path as lake_path) as incoming
            on manifest.lake_path = incoming.lake_path
            when not matched then insert
                (lake_path, source, snapshot_at, row_count, loaded_at, load_seq, size_bytes, sha256)
            values (@lake_path, @source, @snapshot_at, @row_count, @loaded_at, @load_seq,
                    @size_bytes, @sha256)
            """,
            lake_path=lake_path,
            source=source,
            snapshot_at=datetime.fromtimestamp(file_time_ms / 1000, UTC),
            row_count=count,
            loaded_at=loaded_at,
            load_seq=seq,
            size_bytes=stored.size_bytes,
            sha256=stored.sha256,
        )
        return count

    def _run_load_job(
        self, raw: RawTable, table: str, uri: str, lake_path: str, load_seq: int
    ) -> None:
        config = bigquery.LoadJobConfig(
            job_timeout_ms=JOB_TIMEOUT_MS,
            source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
            schema=raw_schema(raw),
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            ignore_unknown_values=False,
        )
        job_id = load_job_id(raw.name, lake_path, load_seq)
        try:
            job = self.client.load_table_from_uri(
                uri, table, job_config=config, job_id=job_id, location=self.location
            )
        except Conflict:  # this very load ran before (a retried task): use its outcome
            job = cast(bigquery.LoadJob, self.client.get_job(job_id, location=self.location))
        try:
            # raises if the job failed: then nothing of the file was loaded
            job.result(timeout=BIGQUERY_JOB_TIMEOUT_SECONDS)
        except BadRequest as exc:  # BigQuery refused the rows themselves
            raise WarehouseRefused(f"BigQuery refused the rows: {str(exc)[:300]}") from None

    def history_report(self, movers: int, mover_filter: MoverFilter) -> HistoryReport:
        (row,) = self._query(
            f"select (select count(*) from `{self.prod}.facts_coins`) as facts_rows, "
            f"(select count(*) from `{self.prod}.mart_market_overview`) as snapshots, "
            # the ranking is the latest snapshot: a small table, where the market's is not
            f"max(snapshot_at) as latest from `{self.prod}.mart_latest_ranking`"
        )

        def movers_by(direction: Literal["gainers", "losers"]) -> list[dict[str, object]]:
            sql = to_bigquery_sql(movers_sql(direction), self.prod)
            return [dict(r.items()) for r in self._query(sql, **mover_filter.params(movers))]

        return HistoryReport(
            row.facts_rows, row.snapshots, row.latest, movers_by("gainers"), movers_by("losers")
        )

    def record_audit(self, checks: list[AuditCheck]) -> None:
        """Replace `ops_audit` with this audit's checks (a truncating load job)."""
        run_at = _timestamp(datetime.now(tz=UTC))
        rows = [
            {"run_at": run_at, "check_name": c.check, "status": c.status, "message": c.message}
            for c in checks
        ]
        self._replace_ops_table("audit", AUDIT_SCHEMA, rows)

    def _replace_ops_table(
        self, name: str, schema: list[bigquery.SchemaField], rows: list[dict[str, Any]]
    ) -> None:
        """`ops_<name>` in the prod dataset becomes `rows`: a truncating load job from a
        file staged beside the lake, like every load here."""
        uri = self.lake.stage(f"ops/{name}", ".ndjson.gz", _gzip(_ndjson(rows)))
        config = bigquery.LoadJobConfig(
            job_timeout_ms=JOB_TIMEOUT_MS,
            source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
            schema=schema,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        )
        self.client.load_table_from_uri(
            uri, f"{self.prod}.ops_{name}", job_config=config, location=self.location
        ).result(timeout=BIGQUERY_JOB_TIMEOUT_SECONDS)

    def build_scope(self) -> BuildScope:
        (row,) = self._query(
            f"select (select coalesce(max(covered_seq), 0) from `{self.prod}.ops_builds` "
            f"where success) as after_seq, "
            f"(select coalesce(max(load_seq), 0) from `{self.raw}.lake_files`) as covered_seq, "
            f"(select max(snapshot_at) from `{self.raw}.lake_files`) as newest, "
            f"(select array_agg(whole_project order by covered_seq desc, run_at desc limit 1) "
            f"from `{self.prod}.ops_builds` where success and whole_project != '') "
            "as whole_project"
        )
        kinds = self._query(  # raw/<source>/<kind>/...: flows/core/lake_layout.py
            f"select distinct split(lake_path, '/')[safe_offset(2)] as kind "
            f"from `{self.raw}.lake_files` where load_seq > @after",
            after=row.after_seq,
        )
        since = recent_since(row.newest)
        (older,) = self._query(  # the last file about a time before the span
            f"select coalesce(max(load_seq), 0) as seq from `{self.raw}.lake_files` "
            "where snapshot_at < @since",
            since=since or datetime.fromtimestamp(0, UTC),
        )
        return BuildScope(
            after_seq=row.after_seq,
            covered_seq=row.covered_seq,
            new_kinds=frozenset(r.kind for r in kinds if r.kind),
            whole_project=row.whole_project[0] if row.whole_project else None,
            recent_since=since,
            recent_after_seq=older.seq,
        )

    def failing_lake_paths(self, relations: list[str], after_seq: int) -> dict[str, set[str]]:
        paths: dict[str, set[str]] = {}
        for relation in relations:
            rows = self._query(
                f"select distinct lake_path, broken_rules from {relation} "
                "where lake_path is not null and load_seq > @after",
                after=after_seq,
            )
            for row in rows:
                paths.setdefault(row.lake_path, set()).update(row.broken_rules.split())
        return paths

    def _keep_issued(self) -> None:
        """Remember the highest load number before files leave the manifest."""
        self._query(
            f"update `{self.raw}.load_sequence` set issued = greatest(issued, "
            f"(select coalesce(max(load_seq), 0) from `{self.raw}.lake_files`)) where true"
        )

    def forget_file(self, lake_path: str) -> None:
        """Manifest first, then the rows (no transaction spans BigQuery statements here): a
        crash between leaves rows without a manifest entry, which the next load repairs as
        it repairs any crash (it finds the rows and records them), and the gate then refuses
        them again."""
        self._keep_issued()
        for raw in (MANIFEST, *DATA_TABLES):
            self._query(
                f"delete from `{self.raw}.{raw.name}` where lake_path = @lake_path",
                lake_path=lake_path,
            )

    def models_predate_load_seq(self) -> bool:
        try:
            table = self.client.get_table(f"{self.prod}.facts_coins")
        except NotFound:
            return False
        return "load_seq" not in {field.name for field in table.schema}

    def record_dbt_results(
        self,
        results: list[DbtNodeResult],
        scope: BuildScope | None = None,
        whole_project: str | None = None,
    ) -> None:
        """Replace `ops_dbt_results` with the latest build's nodes: a truncating load job
        from a file staged beside the lake, like every load here; with `scope`, append the
        build to `ops_builds`."""
        if scope is not None:
            failed = [r.node for r in results if r.status in ("error", "fail")]
            self._query(
                f"insert into `{self.prod}.ops_builds` "
                "(run_at, covered_seq, success, failed, whole_project) "
                "values (current_timestamp(), @covered, @success, @failed, @whole_project)",
                covered=scope.covered_seq,
                success=not failed,
                failed=", ".join(failed) or "",
                whole_project=whole_project or "",  # "" for a selection: no null parameter
            )
        run_at = _timestamp(datetime.now(tz=UTC))
        rows = [
            {"run_at": run_at, "node": r.node, "resource_type": r.resource_type,
             "status": r.status, "seconds": r.seconds, "message": r.message}
            for r in results
        ]  # fmt: skip
        self._replace_ops_table("dbt_results", DBT_RESULTS_SCHEMA, rows)

    def record_publish(self) -> None:
        """What the local publish step adds for the health page: row counts of the raw
        tables and models (`count(*)` is metadata-only on BigQuery) and when. The models
        themselves need no copy: the app reads them where dbt built them."""
        counted = [
            (f"raw.{raw.name}", f"{self.raw}.{raw.name}") for raw in (*DATA_TABLES, MANIFEST)
        ] + [
            (table.name, f"{self.prod}.{table.name.split('.')[1]}")
            for table in SERVED_TABLES
            if table.name.startswith("prod.")
        ]
        counts = " union all ".join(
            f"select '{name}' as model, count(*) as row_count from `{table}`"
            for name, table in counted
        )
        self._query(f"create or replace table `{self.prod}.ops_model_rows` as {counts}")
        self._query(
            f"create or replace table `{self.prod}.ops_published` as "
            "select current_timestamp() as published_at"
        )

    def apply_retention(self, days: int) -> int:
        raise ValueError(
            "CRYPTOLYTICS_FACTS_RETENTION_DAYS is for the local target; on BigQuery, old "
            "partitions are cheap to keep (long-term storage) or expire by table setting"
        )

    def forget_loads(self) -> None:
        """Empty the raw tables and the manifest (before a reload of the whole lake)."""
        self._keep_issued()
        for raw in (MANIFEST, *DATA_TABLES):
            self._query(f"delete from `{self.raw}.{raw.name}` where true")


def _parameter(name: str, value: Any) -> bigquery.ScalarQueryParameter:
    """A typed query parameter (bool before int: a bool is an int in Python)."""
    for kind, name_in_bigquery in (
        (bool, "BOOL"), (int, "INT64"), (float, "FLOAT64"), (str, "STRING"),
        (datetime, "TIMESTAMP"),
    ):  # fmt: skip
        if isinstance(value, kind):
            return bigquery.ScalarQueryParameter(name, name_in_bigquery, value)
    raise TypeError(f"query parameter {name!r}: no BigQuery type for {type(value).__name__}")


@functools.lru_cache(maxsize=256)
def to_bigquery_sql(sql: str, prod_dataset_id: str) -> str:
    """The app's DuckDB-dialect SQL for BigQuery: `prod.x` -> `<project>.<dataset>.x`,
    `ops.x` -> `ops_x` there, `$name` -> `@name`, DuckDB function names -> BigQuery's.
    Cached: the app runs the same few statements over and over."""
    project, dataset = prod_dataset_id.split(".")

    def rewrite(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and node.db in ("prod", "ops"):
            name = node.name if node.db == "prod" else f"ops_{node.name}"
            return exp.table_(name, db=dataset, catalog=project, alias=node.alias or None)
        if isinstance(node, exp.Escape):  # backslash is BigQuery's LIKE escape already
            return node.this
        return node

    return sqlglot.parse_one(sql, read="duckdb").transform(rewrite).sql(dialect="bigquery")


class BigQueryReader:
    """The app's reader on the cloud target, behind the same `query(sql, params)` as the
    DuckDB serving copy. The app's SQL keeps to what DuckDB and BigQuery share; sqlglot
    rewrites the rest once per statement: `prod.x` becomes the prod dataset's table,
    `ops.x` its `ops_x`, `$name` a bound `@name`, DuckDB's function names BigQuery's."""

    def __init__(self, client: bigquery.Client, prod_dataset: str, location: str) -> None:
        self.client, self.location = client, location
        self.prod = f"{client.project}.{prod_dataset}"

    def query(self, sql: str, params: QueryParams | None = None) -> pd.DataFrame:
        config = bigquery.QueryJobConfig(
            job_timeout_ms=JOB_TIMEOUT_MS,
            query_parameters=[_parameter(k, v) for k, v in (params or {}).items()],
        )
        try:
            translated = to_bigquery_sql(sql, self.prod)
            job = self.client.query(translated, job_config=config, location=self.location)
            return job.to_dataframe(create_bqstorage_client=False)
        except NotFound as exc:
            raise NoDataYet(f"nothing built yet in {self.prod}: run the pipeline once") from exc

    def close(self) -> None:
        self.client.close()


def bigquery_client(settings: Settings, credentials: Credentials | None) -> bigquery.Client:
    """A client in the settings' project and location; `credentials=None`: application
    default credentials; an emulator's endpoint when one is set."""
    from google.api_core.client_options import ClientOptions

    endpoint = settings.bigquery_api_endpoint
    return bigquery.Client(
        project=settings.gcp_project,
        credentials=credentials,
        location=settings.bigquery_location,
        client_options=ClientOptions(api_endpoint=endpoint) if endpoint else None,
    )
