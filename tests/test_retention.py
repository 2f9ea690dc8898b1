"""Retention of 5-minute rows: only what the rollups cover goes, and the lake rebuilds it all."""

from __future__ import annotations

import duckdb
import pytest

from flows.adapters.duckdb_warehouse import DuckDBWarehouse
from flows.adapters.lake import Lake
from flows.core.loading import load_pending
from flows.core.settings import Settings
from testkit.pipeline import replay_bodies, run_dbt, tick

pytestmark = pytest.mark.integration

ROLLUPS = (
    "select (select count(*) from prod.mart_coin_hourly), "
    "(select round(sum(close_price_usd), 6) from prod.mart_coin_hourly), "
    "(select count(*) from prod.mart_coin_daily), "
    "(select round(sum(close_price_usd), 6) from prod.mart_coin_daily)"
)


def query(settings: Settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_retention_keeps_rollups_and_the_lake_rebuilds_everything(settings: Settings) -> None:
    days = replay_bodies(10, limit=200)
    tick(settings, [("replay", ts, body) for ts, body in days])
    rollups = query(settings, ROLLUPS)
    facts_before = query(settings, "select count(*) from prod.facts_coins")[0][0]
    # one (coin, day) loses its daily rollup: its 5-minute rows must survive retention
    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.execute(
            "delete from prod.mart_coin_daily where coin_id = 'bitcoin' "
            "and bucket_at = (select min(bucket_at) from prod.mart_coin_daily)"
        )

    with DuckDBWarehouse(settings.duckdb_path) as warehouse:
        dropped = warehouse.apply_retention(3)

    kept_days = query(
        settings,
        "select count(distinct snapshot_at) from prod.facts_coins where coin_id = 'ethereum'",
    )
    assert kept_days == [(4,)]  # the newest snapshot and the three days before it
    uncovered = query(
        settings,
        "select count(*) from prod.facts_coins where coin_id = 'bitcoin' "
        "and snapshot_at = (select min(snapshot_at) from raw.lake_files)",
    )
    assert uncovered == [(1,)]  # no daily rollup for it: kept
    assert query(settings, "select count(*) from prod.facts_coins")[0][0] == facts_before - dropped
    assert query(settings, "select count(*) from raw.coincap_assets") == query(
        settings, "select count(*) from prod.facts_coins"
    )
    hourly_after = query(settings, ROLLUPS)[0][:2]
    assert hourly_after == rollups[0][:2]  # the hourly rollups are untouched

    # the way back: reload the lake, rebuild from scratch, and everything is there again
    with DuckDBWarehouse(settings.duckdb_path) as warehouse:
        warehouse.forget_loads()
        load_pending(Lake(settings.lake_url), warehouse)
    run_dbt(settings, "build", "--full-refresh")
    assert query(settings, "select count(*) from prod.facts_coins")[0][0] == facts_before
    assert query(settings, ROLLUPS) == rollups
