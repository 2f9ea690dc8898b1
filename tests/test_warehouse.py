"""The loader against real DuckDB: exactly once, whatever happens between two runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from flows.lake import Lake
from flows.snapshot import parse_snapshot
from flows.warehouse import DuckDBWarehouse, LoadError, load_pending
from tests.conftest import RECORDED_TIMESTAMP, body_variant

FIVE_MINUTES = 300_000


def fill_lake(lake: Lake, raw: bytes, snapshots: int, start: int = RECORDED_TIMESTAMP) -> int:
    """Write `snapshots` snapshots five minutes apart; returns the number of asset rows."""
    rows = 0
    for i in range(snapshots):
        body = body_variant(
            raw, timestamp_ms=start + i * FIVE_MINUTES, price_factor=1 + i / 1000, drop=i % 3
        )
        lake.write_snapshot("coincap", start + i * FIVE_MINUTES, body)
        rows += len(parse_snapshot(body).assets)
    return rows


def table_counts(db: Path) -> tuple[int, int, int]:
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("select count(*) from raw.coincap_assets").fetchall()[0][0]
        files = con.execute("select count(*) from raw.lake_files").fetchall()[0][0]
        distinct = con.execute(
            "select count(*) from (select distinct id, snapshot_at from raw.coincap_assets)"
        ).fetchall()[0][0]
    return rows, files, distinct


def assert_manifest_matches_rows(db: Path) -> None:
    """Each file in the manifest has exactly its rows; no row without a manifest entry."""
    with duckdb.connect(str(db), read_only=True) as con:
        mismatches = con.execute(
            """
            select coalesce(f.lake_path, r.lake_path), f.row_count, r.rows
            from raw.lake_files as f
            full outer join (
                select lake_path, count(*) as rows from raw.coincap_assets group by 1
            ) as r
              on r.lake_path = f.lake_path
            where f.row_count is distinct from r.rows
            """
        ).fetchall()
    assert mismatches == []


def test_loading_twice_gives_the_same_rows(tmp_path: Path, recorded_assets: bytes) -> None:
    lake = Lake(str(tmp_path / "lake"))
    expected_rows = fill_lake(lake, recorded_assets, 3)
    db = tmp_path / "wh.duckdb"

    with DuckDBWarehouse(db) as warehouse:
        first = load_pending(lake, warehouse)
        second = load_pending(lake, warehouse)

    assert (first.files_loaded, first.rows_loaded) == (3, expected_rows)
    assert (second.files_loaded, second.rows_loaded, second.files_already_loaded) == (0, 0, 3)
    assert table_counts(db) == (expected_rows, 3, expected_rows)
    assert_manifest_matches_rows(db)


def test_typed_rows_keep_their_lake_file_and_snapshot_time(
    tmp_path: Path, recorded_assets: bytes
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.write_snapshot("coincap", RECORDED_TIMESTAMP, recorded_assets)
    db = tmp_path / "wh.duckdb"
    with DuckDBWarehouse(db) as warehouse:
        load_pending(lake, warehouse)
        row = warehouse.con.execute(
            "select snapshot_at, epoch_ms(snapshot_at), rank, price_usd, max_supply, explorer, "
            "source, lake_path "
            "from raw.coincap_assets where id = 'ethereum'"
        ).fetchall()[0]
    assert str(row[0]) == "2025-03-16 18:34:31.411000"
    assert row[1] == RECORDED_TIMESTAMP
    assert row[2:7] == (
        2,
        pytest.approx(1902.7127248050974050),
        None,
        "https://etherscan.io/",
        "coincap",
    )
    assert row[7] == "raw/coincap/assets/date=2025-03-16/1742150071411.json.gz"


def test_late_and_backfilled_files_load_too(tmp_path: Path, recorded_assets: bytes) -> None:
    lake = Lake(str(tmp_path / "lake"))
    rows = fill_lake(lake, recorded_assets, 2)
    db = tmp_path / "wh.duckdb"
    with DuckDBWarehouse(db) as warehouse:
        load_pending(lake, warehouse)
        # a file older than everything loaded arrives afterwards (a late write, a backfill)
        late = body_variant(recorded_assets, timestamp_ms=RECORDED_TIMESTAMP - 86_400_000)
        lake.write_snapshot("coincap", RECORDED_TIMESTAMP - 86_400_000, late)
        result = load_pending(lake, warehouse)
    assert (result.files_loaded, result.rows_loaded) == (1, 100)
    assert table_counts(db)[0] == rows + 100


def test_a_file_written_but_not_loaded_is_loaded_by_the_next_run(
    tmp_path: Path, recorded_assets: bytes
) -> None:
    """A crash after the lake write and before the load loses nothing."""
    lake = Lake(str(tmp_path / "lake"))
    db = tmp_path / "wh.duckdb"
    fill_lake(lake, recorded_assets, 1)
    with DuckDBWarehouse(db) as warehouse:
        load_pending(lake, warehouse)
    fill_lake(lake, recorded_assets, 1, start=RECORDED_TIMESTAMP + FIVE_MINUTES)  # ... crash here
    with DuckDBWarehouse(db) as warehouse:
        assert load_pending(lake, warehouse).files_loaded == 1
    assert table_counts(db)[1] == 2


def test_an_unreadable_lake_file_fails_loudly_and_the_rest_still_load(
    tmp_path: Path, recorded_assets: bytes
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    rows = fill_lake(lake, recorded_assets, 2)
    broken = tmp_path / "lake/raw/coincap/assets/date=2025-03-16/1742150000000.json.gz"
    broken.write_bytes(b"\x1f\x8b truncated gzip")
    db = tmp_path / "wh.duckdb"
    with (
        DuckDBWarehouse(db) as warehouse,
        pytest.raises(LoadError, match=r"1742150000000\.json\.gz"),
    ):
        load_pending(lake, warehouse)
    assert table_counts(db)[:2] == (rows, 2)


KILLED_LOADER = """
import logging, os, random, signal, sys, threading, time
from pathlib import Path
from flows.lake import Lake
from flows.warehouse import DuckDBWarehouse, load_pending

lake_dir, db, after_files, seed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
random.seed(seed)


class KillAfter(logging.Handler):
    # SIGKILL this process a moment after the Nth file committed: between two files, or
    # inside the next file's transaction, depending on the random delay.
    def __init__(self):
        super().__init__()
        self.files = 0

    def emit(self, record):
        if record.getMessage().startswith("loaded "):
            self.files += 1
            if self.files == after_files:
                delay = random.uniform(0, 0.01)
                threading.Timer(delay, os.kill, (os.getpid(), signal.SIGKILL)).start()


logging.getLogger("flows.warehouse").addHandler(KillAfter())
logging.getLogger("flows.warehouse").setLevel(logging.INFO)
with DuckDBWarehouse(db) as warehouse:
    load_pending(Lake(lake_dir), warehouse)
time.sleep(1)  # a kill still pending lands here, after the last commit
"""


def test_sigkill_at_any_point_of_a_load_leaves_no_partial_file(
    tmp_path: Path, recorded_assets: bytes
) -> None:
    """SIGKILL real loader processes after 1..N committed files plus a random moment (between
    files or inside the next file's transaction); after each kill the warehouse holds whole
    files only, and a normal run then completes the work exactly."""
    lake_dir = tmp_path / "lake"
    lake = Lake(str(lake_dir))
    files = 60
    expected_rows = fill_lake(lake, recorded_assets, files)
    db = tmp_path / "wh.duckdb"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    loaded_before = 0
    for run, after in enumerate((1, 2, 3, 5, 4, 2, 3, 1, 2, 3)):
        process = subprocess.run(
            [sys.executable, "-c", KILLED_LOADER, str(lake_dir), str(db), str(after), str(run)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
        assert_manifest_matches_rows(db)
        loaded = table_counts(db)[1]
        assert loaded - loaded_before >= after  # the files committed before the kill stay
        assert loaded < files  # killed mid-run, not after the work was done
        loaded_before = loaded

    with DuckDBWarehouse(db) as warehouse:
        load_pending(lake, warehouse)
    assert table_counts(db) == (expected_rows, files, expected_rows)
    assert_manifest_matches_rows(db)
