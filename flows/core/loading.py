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
from datetime import UTC, datetime, timedelta
from typing import Protocol, Self

from flows.core.lake_layout import (
    HistoryKey,
    LakeFileUnreadable,
    LakeStore,
    StoredFile,
    history_key,
    source_of,
)
from flows.core.queries import MoverFilter
from flows.core.rates import RatesSnapshot, parse_rates
from flows.core.snapshot import (
    HistoryWindow,
    InvalidSnapshot,
    Snapshot,
    parse_history,
    parse_snapshot,
    safe_text,
)

log = logging.getLogger(__name__)


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
    to `covered_seq` (the highest loaded when it starts); which kinds of lake file those rows
    came from (`assets`, `rates`, `history`: what the build must reach); the dbt project
    the last passing build of every node ran (its fingerprint), if any; and the recent span
    (`recent_span`): every file loaded after `recent_after_seq` is about `recent_since` or
    later, which lets the build's filters read only recent partitions."""

    after_seq: int
    covered_seq: int
    new_kinds: frozenset[str] = frozenset()
    whole_project: str | None = None
    recent_since: datetime | None = None
    recent_after_seq: int = 0

    def dbt_env(self) -> dict[str, str]:
        """What dbt's macros read of the scope (dbt/macros/test_scope.sql, new_rows.sql)."""
        env = {"CRYPTOLYTICS_TESTS_AFTER_SEQ": str(self.after_seq)}
        if self.recent_since is not None:
            env["CRYPTOLYTICS_RECENT_SINCE"] = self.recent_since.strftime("%Y-%m-%d %H:%M:%S")
            env["CRYPTOLYTICS_RECENT_AFTER_SEQ"] = str(self.recent_after_seq)
        return env


RECENT_MARGIN = timedelta(hours=1)


def recent_since(newest: datetime | None) -> datetime | None:
    """The start of the day an hour before `newest`, the latest time of any lake file (data,
    not the clock): a tick on BigQuery reads one daily partition (two in the day's first
    hour), and a model up to an hour behind still finds its newest rows in the span (one
    further behind makes one build read by load sequence alone: correct, unpruned)."""
    if newest is None:
        return None
    utc = (newest if newest.tzinfo else newest.replace(tzinfo=UTC)).astimezone(UTC)
    return (utc - RECENT_MARGIN).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class HistoryReport:
    """What a run summary shows: how much history there is and who moved most."""

    facts_rows: int
    snapshots: int
    latest_snapshot_at: datetime | None
    gainers: list[dict[str, object]]
    losers: list[dict[str, object]]


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
    """Everything the flows ask of a warehouse: loading lake files, the reports and records
    of the health page, dbt's results, retention. `DuckDBWarehouse` and `BigQueryDatasets`
    (flows/adapters/) implement all of it; a test checks both against this list."""

    supports_retention: bool  # can `apply_retention` drop old facts (DuckDB), or not

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def close(self) -> None: ...

    def loaded_paths(self) -> set[str]: ...

    def manifest(self) -> list[ManifestEntry]: ...

    def data_sources(self) -> set[str]: ...

    def load_snapshot(self, stored: StoredFile, source: str, snapshot: Snapshot) -> int: ...

    def load_history(self, stored: StoredFile, key: HistoryKey, window: HistoryWindow) -> int: ...

    def load_rates(self, stored: StoredFile, source: str, rates: RatesSnapshot) -> int: ...

    def record_dead_letters(self, letters: list[DeadLetter]) -> int: ...

    def recorded_quarantine(self) -> set[str]: ...

    def build_scope(self) -> BuildScope: ...

    def record_dbt_results(
        self,
        results: list[DbtNodeResult],
        scope: BuildScope | None = None,
        whole_project: str | None = None,
    ) -> None: ...

    def failing_lake_paths(self, relations: list[str], after_seq: int) -> dict[str, set[str]]:
        """Lake file -> the rules its rows broke, among the stored failures of a build's gate
        (rows above `after_seq`: the build's own)."""
        ...

    def record_audit(self, checks: list[AuditCheck]) -> None: ...

    def forget_file(self, lake_path: str) -> None: ...

    def models_predate_load_seq(self) -> bool: ...

    def history_report(self, movers: int, mover_filter: MoverFilter) -> HistoryReport: ...

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


def load_pending(lake: LakeStore, warehouse: Warehouse) -> LoadResult:
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
    for lake_path in [*scan.snapshots, *scan.rates, *scan.history]:
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
                "%s: %d row(s) left out by validation: %s",
                lake_path,
                len(rejected),
                "; ".join(rejected[:5]),
            )
        result.files_loaded += 1
        result.rows_loaded += rows
        log.info("loaded %s: %d rows", lake_path, rows)
    return result


def _dead_letter(
    lake: LakeStore, warehouse: Warehouse, lake_path: str, stage: str, reason: str
) -> None:
    """Quarantine copy and note, then the warehouse's record, then the original removed:
    a crash anywhere in between is finished by the next run (same names, same key)."""
    log.error("lake file %s refused at %s, moved to quarantine: %s", lake_path, stage, reason)
    kept = lake.dead_letter(lake_path, stage, reason)
    warehouse.record_dead_letters(
        [DeadLetter(stage, source_of(lake_path), lake_path, reason, kept)]
    )


def record_quarantine_notes(lake: LakeStore, warehouse: Warehouse) -> int:
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
    source = source_of(lake_path)
    if "/rates/" in lake_path:
        rates = parse_rates(stored.body)
        return lambda warehouse: warehouse.load_rates(stored, source, rates), rates.rejected
    snapshot = parse_snapshot(stored.body)
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


def verify_lake(lake: LakeStore, warehouse: Warehouse) -> VerifyReport:
    """Read every loaded file again and compare its size and SHA-256 with the manifest."""
    report = VerifyReport()
    scan = lake.scan()
    report.unknown = scan.unknown
    in_lake = set(scan.snapshots) | set(scan.rates) | set(scan.history)
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
