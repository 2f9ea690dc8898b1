"""The app's serving copies: incremental A/B publishing, and readers next to a writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from flows.adapters import serving
from flows.adapters.serving import NoDataYet, ServingReader, current_copy, publish
from flows.core.settings import PROJECT_ROOT, Settings
from flows.replay.dataset import ReplayDataset
from flows.replay.server import assets_body
from testkit.pipeline import replay_bodies, run_dbt, tick
from tests.helpers import assert_app_stands_alone

pytestmark = pytest.mark.integration


def test_nothing_to_read_before_the_first_publish(settings: Settings) -> None:
    with pytest.raises(NoDataYet):
        ServingReader(settings.serving_dir).query("select 1")


def test_publish_alternates_copies_and_copies_only_what_changed(settings: Settings) -> None:
    days = replay_bodies(3, limit=300)
    tick(settings, [("replay", ts, body) for ts, body in days[:2]])
    first = current_copy(settings.serving_dir)
    reader = ServingReader(settings.serving_dir)
    assert reader.query("select count(*) as n from prod.facts_coins")["n"].iat[0] == 600

    tick(settings, [("replay", days[2][0], days[2][1])])
    second = current_copy(settings.serving_dir)
    assert {first.name, second.name} == {"a.duckdb", "b.duckdb"}
    assert reader.query("select count(*) as n from prod.facts_coins")["n"].iat[0] == 900

    # copy `a` is one publish behind: catching it up copies the newest day only
    result = publish(settings.duckdb_path, settings.serving_dir)
    assert result.copy == first.stem
    assert result.rows_copied["prod.facts_coins"] == 300
    assert result.rows_copied["prod.mart_market_overview"] == 1
    counts = reader.query(
        "select (select count(*) from prod.facts_coins) as facts, "
        "(select count(*) from prod.mart_market_overview) as snapshots, "
        "(select count(*) from prod.mart_latest_ranking) as ranking"
    ).iloc[0]
    assert (counts["facts"], counts["snapshots"], counts["ranking"]) == (900, 3, 300)


def test_per_coin_tables_are_kept_in_coin_order(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page reading a few coins skips the other coins' row groups only if the copy is
    sorted by coin: the first publish sorts, a short unsorted tail is left, a long one is
    sorted away, and the rows are the warehouse's either way."""
    monkeypatch.setattr(serving, "RESORT_TAIL_ROWS", 300)
    days = replay_bodies(3, limit=200)

    def physical_order(copy: Path, table: str, time_column: str) -> list[tuple[str, object]]:
        with duckdb.connect(str(copy), read_only=True) as con:
            return con.execute(
                f"select coin_id, {time_column} from {table} order by rowid"
            ).fetchall()

    def in_key_order(copy: Path) -> dict[str, bool]:
        rows = {
            "prod.facts_coins": physical_order(copy, "prod.facts_coins", "snapshot_at"),
            "prod.mart_coin_hourly": physical_order(copy, "prod.mart_coin_hourly", "bucket_at"),
        }
        return {table: found == sorted(found) for table, found in rows.items()}

    tick(settings, [("replay", *days[0])])
    first = current_copy(settings.serving_dir)
    assert in_key_order(first) == {"prod.facts_coins": True, "prod.mart_coin_hourly": True}

    tick(settings, [("replay", *days[1])])  # the other copy: a file copy plus a 200-row tail
    second = current_copy(settings.serving_dir)
    assert second != first
    assert in_key_order(second) == {"prod.facts_coins": False, "prod.mart_coin_hourly": False}

    tick(settings, [("replay", *days[2])])  # the first copy again, 400 rows behind: sorted
    assert current_copy(settings.serving_dir) == first
    assert in_key_order(first) == {"prod.facts_coins": True, "prod.mart_coin_hourly": True}
    with duckdb.connect(str(first), read_only=True) as con:
        con.execute("attach $path as warehouse (read_only)", {"path": str(settings.duckdb_path)})
        for table in ("prod.facts_coins", "prod.mart_coin_hourly"):
            (difference,) = con.execute(
                f"select count(*) from ((from {table} except all from warehouse.{table}) "
                f"union all (from warehouse.{table} except all from {table}))"
            ).fetchall()[0]
            assert difference == 0, table


def test_rows_published_again_replace_their_old_version_in_both_copies(
    settings: Settings,
) -> None:
    """Ticks within one hour publish that hour's buckets again, and a late file publishes
    rows older than ones already served: each copy, one or two publishes behind, must
    replace them by key (no duplicate, so no rebuild) and end equal to the warehouse."""
    dataset = ReplayDataset()
    try:
        day = dataset.days[0]
        rows = dataset.assets(day, limit=150)
    finally:
        dataset.close()
    minute = 60_000
    # minutes past midnight, the files of one tick; :02 arrives late, a file of the day
    # before (23:10) too, then a tick brings another of that hour with a new one: both hours'
    # buckets are published again, so the batch's earliest time must bound the upsert
    arrivals = [[0], [5], [10], [2], [-50], [15], [-40, 20]]
    upserted = [table.name for table in serving.SERVED_TABLES if table.mode != "replace"]
    files = 0
    for step, offsets in enumerate(arrivals):
        at = [day + offset * minute for offset in offsets]
        result = tick(settings, [("replay", ts, assets_body(ts, rows)) for ts in at])
        files += len(offsets)
        assert result is not None
        assert step == 0 or result.rebuilt is None, (offsets, result.rebuilt)  # 0: the first copy
        copy = current_copy(settings.serving_dir)
        with duckdb.connect(str(copy), read_only=True) as con:
            warehouse = {"path": str(settings.duckdb_path)}
            con.execute("attach $path as warehouse (read_only)", warehouse)
            for table in upserted:
                (difference,) = con.execute(
                    f"select count(*) from ((from {table} except all from warehouse.{table}) "
                    f"union all (from warehouse.{table} except all from {table}))"
                ).fetchall()[0]
                assert difference == 0, (offsets, table)
            (facts,) = con.execute("select count(*) from prod.facts_coins").fetchall()[0]
            assert facts == 150 * files


def test_full_publish_after_a_full_refresh_gives_the_same_copy(settings: Settings) -> None:
    tick(settings, [("replay", ts, body) for ts, body in replay_bodies(2, limit=200)])
    reader = ServingReader(settings.serving_dir)
    checksum = "select count(*) as n, sum(close_price_usd) as s from prod.mart_coin_hourly"
    before = reader.query(checksum).iloc[0].to_dict()
    run_dbt(settings, "build", "--full-refresh")
    publish(settings.duckdb_path, settings.serving_dir, full=True)
    assert reader.query(checksum).iloc[0].to_dict() == pytest.approx(before)


READER = """
import json, sys, time, traceback
from pathlib import Path
from streamlit_app import data
stop = Path(sys.argv[1])
seen, errors, reads = {}, [], 0
while not stop.exists():
    try:
        latest = data.as_of()
        data.market_summary(); data.ranking("bit", 100, 0.0, "24h %"); data.movers("gainers")
        data.most_traded(); data.coins(); data.coin_profile("bitcoin")
        data.coin_series("bitcoin", "1M"); data.compare_series(("bitcoin", "ethereum"), "7D")
        data.pipeline_health(); data.data_source()
        reads += 1
        if latest is not None:
            seen.setdefault(latest.isoformat(), time.time())
    except Exception:
        errors.append(traceback.format_exc())
    time.sleep(0.05)
print(json.dumps({"seen": seen, "errors": errors, "reads": reads}))
"""


def test_readers_never_fail_while_the_pipeline_publishes(
    settings: Settings, tmp_path: Path
) -> None:
    """The app process reads every page's queries in a loop while the pipeline ticks and
    publishes: no lock errors, and each new snapshot shows within one cache TTL."""
    ttl = 1
    days = replay_bodies(5, limit=500)
    tick(settings, [("replay", *days[0])])
    env = {**os.environ, "CRYPTOLYTICS_APP_CACHE_TTL_SECONDS": str(ttl)}
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(tmp_path / "stop")],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    published_at = {}
    for timestamp, body in days[1:]:
        tick(settings, [("replay", timestamp, body)])
        published_at[timestamp] = time.time()
        time.sleep(ttl + 1)
    (tmp_path / "stop").touch()
    out, _ = reader.communicate(timeout=120)
    report = json.loads(out.strip().splitlines()[-1])

    assert report["errors"] == []
    assert report["reads"] > 20
    for timestamp, when in published_at.items():
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp / 1000))
        assert iso in report["seen"], f"the reader never saw snapshot {iso}"
        assert report["seen"][iso] - when <= ttl + 2.0


def test_the_app_reads_the_local_target_without_prefect(settings: Settings) -> None:
    """`streamlit run` alone: the serving copies, no Prefect server, no Prefect imported."""
    tick(settings, [("replay", *replay_bodies(1, limit=100)[0])])
    assert_app_stands_alone()
