"""The loader against real DuckDB: exactly once, whatever happens between two runs."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from flows.adapters.duckdb_warehouse import DuckDBWarehouse
from flows.adapters.lake import Lake
from flows.core.loading import load_pending
from flows.core.snapshot import parse_snapshot
from tests.conftest import RECORDED_TIMESTAMP, body_variant

pytestmark = pytest.mark.integration

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


LATER = RECORDED_TIMESTAMP + 10 * FIVE_MINUTES  # after every file of fill_lake(..., 2)


def dead_letters(db: Path) -> list[tuple[str, str, str, str | None]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(
            "select stage, item, reason, kept_at from ops.dead_letters order by item, reason"
        ).fetchall()


def _poison(recorded_assets: bytes, **first_asset: object) -> bytes:
    body = json.loads(body_variant(recorded_assets, timestamp_ms=RECORDED_TIMESTAMP - 60_000))
    body["data"][0].update(first_asset)
    return json.dumps(body).encode()


# Lake files an older release (or a person) may have left: each must hurt only itself.
BROKEN_LAKE_FILES = {
    "zero-length file": (lambda good: b"", "the file is empty"),
    "truncated gzip": (lambda good: gzip.compress(good)[:200], "truncated gzip"),
    "not gzip at all": (lambda good: b'{"data": []}', "the file is not gzip"),
    "gzip of HTML": (lambda good: gzip.compress(b"<html>502</html>"), "body is not JSON"),
    "gzip bomb": (lambda good: gzip.compress(b" " * (65 * 2**20)), "inflates to more than"),
}


@pytest.mark.parametrize("case", list(BROKEN_LAKE_FILES))
def test_a_broken_lake_file_is_moved_aside_and_the_files_after_it_load(
    tmp_path: Path, recorded_assets: bytes, case: str
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    rows = fill_lake(lake, recorded_assets, 2)
    make, reason = BROKEN_LAKE_FILES[case]
    name = "raw/coincap/assets/date=2025-03-16/1742150000000.json.gz"  # loads first
    broken = tmp_path / "lake" / name
    payload = make(recorded_assets)
    broken.write_bytes(payload)
    db = tmp_path / "wh.duckdb"
    with DuckDBWarehouse(db) as warehouse:
        result = load_pending(lake, warehouse)
        lake.write_snapshot("coincap", LATER, body_variant(recorded_assets, timestamp_ms=LATER))
        after = load_pending(lake, warehouse)  # the next tick: nothing left to trip on
    assert list(result.dead_lettered) == [name] and reason in result.dead_lettered[name]
    assert (result.files_loaded, after.files_loaded, after.dead_lettered) == (2, 1, {})
    assert table_counts(db)[:2] == (rows + 100, 3)
    assert not broken.exists()
    kept = tmp_path / "lake/quarantine/coincap/load/assets/date=2025-03-16/1742150000000.json.gz"
    assert kept.read_bytes() == payload  # the bytes as they were, kept
    note = json.loads(kept.with_name("1742150000000.reason.json").read_text())
    assert note["stage"] == "load" and reason in note["reason"] and note["lake_path"] == name
    ((stage, item, why, kept_at),) = dead_letters(db)
    assert (stage, item, kept_at) == ("load", name, str(kept.relative_to(tmp_path / "lake")))
    assert reason in why


@pytest.mark.parametrize(
    ("first_asset", "reason"),
    [
        ({"rank": str(2**40)}, "`rank` must be a whole number from 1 to 2147483647"),
        ({"name": "\ud800"}, "`name` is not valid UTF-8"),
        ({"marketCapUsd": "-5"}, "`marketCapUsd` must not be negative"),
    ],
)
def test_a_poison_asset_is_left_out_recorded_and_the_rest_loads(
    tmp_path: Path, recorded_assets: bytes, first_asset: dict, reason: str
) -> None:
    """A body an older release accepted whole (a rank past 32 bits, a lone surrogate, a
    negative market cap): the warehouse could not store it or a test would fail on it
    forever. Now that asset is a recorded dead letter; its 99 neighbours load."""
    lake = Lake(str(tmp_path / "lake"))
    rows = fill_lake(lake, recorded_assets, 2)
    poisoned = lake.write_snapshot(
        "coincap", RECORDED_TIMESTAMP - 60_000, _poison(recorded_assets, **first_asset)
    )
    db = tmp_path / "wh.duckdb"
    with DuckDBWarehouse(db) as warehouse:
        result = load_pending(lake, warehouse)
        again = load_pending(lake, warehouse)
    assert (result.files_loaded, result.rows_loaded, result.rows_rejected) == (3, rows + 99, 1)
    assert again.files_loaded == 0 and table_counts(db)[:2] == (rows + 99, 3)
    ((stage, item, why, kept_at),) = dead_letters(db)
    assert (stage, item, kept_at) == ("load", poisoned.path, None)
    assert why.startswith("asset 'bitcoin': ") and reason in why


def test_rows_the_warehouse_refuses_roll_back_and_say_why(tmp_path: Path) -> None:
    """The loader's own contract, below validation: an Asset that bypassed the parser with a
    rank DuckDB's integer cannot hold is refused as the file's fault, and nothing of it stays."""
    from flows.core.lake_layout import StoredFile
    from flows.core.loading import WarehouseRefused
    from flows.core.snapshot import Asset, Snapshot

    asset = Asset("bitcoin", 2**40, "BTC", "Bitcoin", None, None, None, None, 1.0, None, None, None)
    stored = StoredFile("raw/coincap/assets/date=2025-03-16/1742150000000.json.gz", b"", 1, "x")
    with DuckDBWarehouse(tmp_path / "wh.duckdb") as warehouse:
        with pytest.raises(WarehouseRefused, match="DuckDB refused the rows"):
            warehouse.load_snapshot(stored, "coincap", Snapshot(1742150000000, (asset,)))
        assert warehouse.loaded_paths() == set()
    assert table_counts(tmp_path / "wh.duckdb") == (0, 0, 0)


def test_names_outside_the_layout_are_reported_not_loaded_and_stop_nothing(
    tmp_path: Path, recorded_assets: bytes
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    rows = fill_lake(lake, recorded_assets, 2)
    day = tmp_path / "lake/raw/coincap/assets/date=2025-03-16"
    strays = {
        "raw/coincap/assets/date=2025-03-16/notes.txt": b"hello",
        "raw/coincap/assets/date=2025-03-16/1742150071411.json": recorded_assets,
        "raw/coincap/assets/date=2025-03-16/1742150071411 (copy).json.gz": b"x",
        "raw/coincap/assets/date=2031-01-01/1742150071411.json.gz": gzip.compress(b"{}"),
        "raw/other/assets/date=2025-03-16/1742150071411.json.gz": gzip.compress(b"{}"),
    }
    for name, payload in strays.items():
        (tmp_path / "lake" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "lake" / name).write_bytes(payload)
    old_temporary = day / ".1742150071411.json.gz.0123.tmp"  # a killed writer's
    old_temporary.write_bytes(b"half")
    os.utime(old_temporary, (1, 1))
    fresh_temporary = day / ".1742150371411.json.gz.4567.tmp"  # a writer at work right now
    fresh_temporary.write_bytes(b"half")
    db = tmp_path / "wh.duckdb"
    with DuckDBWarehouse(db) as warehouse:
        result = load_pending(lake, warehouse)
    assert sorted(result.unknown_files) == sorted(strays)
    assert (result.files_loaded, result.dead_lettered) == (2, {})
    assert table_counts(db)[0] == rows
    assert result.temporary_files_removed == 1
    assert not old_temporary.exists() and fresh_temporary.exists()
    assert all((tmp_path / "lake" / name).exists() for name in strays)  # left alone


def test_verify_finds_files_missing_altered_or_never_loaded(
    tmp_path: Path, recorded_assets: bytes
) -> None:
    from flows.core.loading import verify_lake

    lake = Lake(str(tmp_path / "lake"))
    fill_lake(lake, recorded_assets, 4)
    db = tmp_path / "wh.duckdb"
    with DuckDBWarehouse(db) as warehouse:
        load_pending(lake, warehouse)
        assert verify_lake(lake, warehouse).ok
        first, second, third, _ = lake.list_snapshots()
        (tmp_path / "lake" / first).unlink()
        altered = gzip.compress(body_variant(recorded_assets, timestamp_ms=RECORDED_TIMESTAMP))
        (tmp_path / "lake" / second).write_bytes(altered)  # same name, other bytes
        (tmp_path / "lake" / third).write_bytes((tmp_path / "lake" / third).read_bytes())
        late = lake.write_snapshot("coincap", LATER, recorded_assets).path
        report = verify_lake(lake, warehouse)
    assert (report.checked, report.missing, report.altered) == (4, [first], [second])
    assert report.not_loaded == [late] and not report.ok  # third: rewritten, same bytes: fine


def test_each_file_gets_the_next_load_sequence_whatever_the_clock(
    tmp_path: Path, recorded_assets: bytes
) -> None:
    """Files get 1, 2, 3... in load order, late files and all: the order of loading, which
    the models and the serving copy follow, not the time on anyone's clock."""
    lake = Lake(str(tmp_path / "lake"))
    fill_lake(lake, recorded_assets, 3)
    db = tmp_path / "wh.duckdb"
    with DuckDBWarehouse(db) as warehouse:
        load_pending(lake, warehouse)
        late = body_variant(recorded_assets, timestamp_ms=RECORDED_TIMESTAMP - 86_400_000)
        late_path = lake.write_snapshot("coincap", RECORDED_TIMESTAMP - 86_400_000, late).path
        load_pending(lake, warehouse)
        manifest = warehouse.con.execute(
            "select lake_path, load_seq from raw.lake_files order by load_seq"
        ).fetchall()
        per_row = warehouse.con.execute(
            "select count(*) from raw.coincap_assets as a join raw.lake_files as f "
            "using (lake_path) where a.load_seq is distinct from f.load_seq"
        ).fetchall()[0][0]
    assert [seq for _, seq in manifest] == [1, 2, 3, 4]
    assert manifest[-1][0] == late_path  # oldest market time, newest load
    assert per_row == 0


KILLED_LOADER = """
import logging, os, random, signal, sys, threading, time
from pathlib import Path
from flows.adapters.lake import Lake
from flows.core.loading import load_pending
from flows.adapters.duckdb_warehouse import DuckDBWarehouse

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


logging.getLogger("flows.core.loading").addHandler(KillAfter())
logging.getLogger("flows.core.loading").setLevel(logging.INFO)
with DuckDBWarehouse(db) as warehouse:
    load_pending(Lake(lake_dir), warehouse)
time.sleep(1)  # a kill still pending lands here, after the last commit
"""


@pytest.mark.e2e  # real processes SIGKILLed
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


def test_a_replay_file_is_never_loaded_into_a_warehouse_of_live_data(
    tmp_path: Path, recorded_assets: bytes
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    rows = fill_lake(lake, recorded_assets, 2)  # live CoinCap data
    db = tmp_path / "wh.duckdb"
    with DuckDBWarehouse(db) as warehouse:
        load_pending(lake, warehouse)
        replayed = body_variant(recorded_assets, timestamp_ms=1609459200000)
        stray = lake.write_snapshot("replay", 1609459200000, replayed)
        load_pending(lake, warehouse)  # refused: moved aside
        result = load_pending(lake, warehouse)
        sources = warehouse.data_sources()
    assert table_counts(db)[0] == rows and sources == {"coincap"}
    ((stage, item, why, _),) = dead_letters(db)
    assert (stage, item) == ("load", stray.path)
    assert "this warehouse holds live CoinCap data" in why
    assert result.dead_lettered == {}  # moved aside once, not refused again every run
