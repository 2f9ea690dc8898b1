"""dbt build on real DuckDB over several real snapshots: contract, history, incrementality."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from flows.adapters.duckdb_warehouse import DuckDBWarehouse
from flows.adapters.lake import Lake
from flows.core.loading import load_pending
from flows.core.settings import PROJECT_ROOT, Settings
from testkit.pipeline import run_dbt
from tests.conftest import RECORDED_TIMESTAMP, body_variant

pytestmark = pytest.mark.integration

MINUTE = 60_000


def land(
    settings: Settings, raw: bytes, offsets_minutes: list[int], *, drop_last: int = 0
) -> dict[int, bytes]:
    """Write snapshots at RECORDED_TIMESTAMP + offset minutes and load them."""
    lake = Lake(settings.lake_url)
    bodies = {}
    for offset in offsets_minutes:
        ts = RECORDED_TIMESTAMP + offset * MINUTE
        bodies[ts] = body_variant(
            raw, timestamp_ms=ts, price_factor=1 + offset / 100, drop=drop_last
        )
        lake.write_snapshot("coincap", ts, bodies[ts])
    with DuckDBWarehouse(settings.duckdb_path) as warehouse:
        load_pending(lake, warehouse)
    return bodies


def query(settings: Settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return con.execute(sql).fetchall()


def columns(settings: Settings, relation: str) -> list[str]:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return [c[0] for c in con.execute(f"select * from {relation} limit 0").description]


def contract_columns() -> dict[str, list[str]]:
    """The models with an enforced dbt contract and its columns, from the project's YAML."""
    import yaml

    found = {}
    for path in (PROJECT_ROOT / "dbt" / "models").rglob("*.yml"):
        for model in yaml.safe_load(path.read_text()).get("models", []):
            if model.get("config", {}).get("contract", {}).get("enforced"):
                found[model["name"]] = [column["name"] for column in model["columns"]]
    return found


def test_a_model_that_breaks_its_contract_fails_the_build(
    settings: Settings, recorded_assets: bytes, tmp_path: Path
) -> None:
    """A change to facts_coins' SQL that retypes a column the app reads is a failed build,
    not a silently different table."""
    project = tmp_path / "dbt"
    shutil.copytree(PROJECT_ROOT / "dbt", project, ignore=shutil.ignore_patterns("target", "logs"))
    model = project / "models" / "marts" / "facts_coins.sql"
    model.write_text(
        model.read_text().replace("        rank,\n", "        cast(rank as varchar) as rank,\n")
    )
    land(settings, recorded_assets, [0])
    with pytest.raises(AssertionError, match="contract"):
        run_dbt(settings, "build", project_dir=project)


def test_build_keeps_the_contracts_and_the_whole_history(
    settings: Settings, recorded_assets: bytes
) -> None:
    land(settings, recorded_assets, [0, 5, 10])
    run_dbt(settings, "build")

    # the contract models hold exactly their contracts' columns, in order (dbt enforces the
    # names and types; the replaced system's columns come first in each contract)
    contracts = contract_columns()
    assert set(contracts) == {"stg_coinsdata", "dim_coins", "facts_coins"}
    assert columns(settings, "staging.stg_coinsdata") == contracts["stg_coinsdata"]
    assert columns(settings, "prod.dim_coins") == contracts["dim_coins"]
    assert columns(settings, "prod.facts_coins") == contracts["facts_coins"]
    assert query(
        settings, "select count(*), count(distinct snapshot_at) from prod.facts_coins"
    ) == [(300, 3)]

    # a second run adds the new snapshots (two fewer coins each) and a late, older one
    land(settings, recorded_assets, [15, 20, -50], drop_last=2)
    run_dbt(settings, "build")

    assert query(
        settings, "select count(*), count(distinct snapshot_at) from prod.facts_coins"
    ) == [(594, 6)]
    assert query(settings, "select count(*) from prod.mart_market_overview") == [(6,)]
    assert query(settings, "select count(*) from prod.dim_coins") == [(100,)]
    # the coin missing from newer files keeps its newest sighting;
    # the late file moves first_seen back
    first, last = query(
        settings,
        "select epoch_ms(first_seen_at), epoch_ms(last_seen_at) from prod.dim_coins "
        "where coin_id = (select coin_id from prod.facts_coins where rank = 100 limit 1)",
    )[0]
    assert (first - RECORDED_TIMESTAMP) // MINUTE == 0
    assert (last - RECORDED_TIMESTAMP) // MINUTE == 10
    newest_first_seen = query(
        settings,
        "select min(epoch_ms(first_seen_at)) from prod.dim_coins where coin_id = 'bitcoin'",
    )
    assert newest_first_seen == [(RECORDED_TIMESTAMP - 50 * MINUTE,)]


def test_latest_ranking_changes_come_from_our_own_history(
    settings: Settings, recorded_assets: bytes
) -> None:
    bodies = land(settings, recorded_assets, [-60, 0])
    run_dbt(settings, "build")

    def price(ts: int, coin: str) -> float:
        return next(float(a["priceUsd"]) for a in json.loads(bodies[ts])["data"] if a["id"] == coin)

    now, hour_ago = RECORDED_TIMESTAMP, RECORDED_TIMESTAMP - 60 * MINUTE
    rows = query(
        settings,
        "select change_1h_pct, change_24h_pct, change_7d_pct, source "
        "from prod.mart_latest_ranking where coin_id = 'bitcoin'",
    )
    change_1h, change_24h, change_7d, source = rows[0]
    assert change_1h == pytest.approx(
        100 * (price(now, "bitcoin") / price(hour_ago, "bitcoin") - 1)
    )
    assert (change_24h, change_7d, source) == (
        None,
        None,
        "coincap",
    )  # too little history: null, not 0
    overview = query(
        settings,
        "select asset_count, btc_dominance_pct from prod.mart_market_overview "
        "order by snapshot_at desc limit 1",
    )
    caps = {a["id"]: float(a["marketCapUsd"]) for a in json.loads(bodies[now])["data"]}
    assert overview == [(100, pytest.approx(100 * caps["bitcoin"] / sum(caps.values())))]


def test_full_refresh_rebuilds_the_same_history(settings: Settings, recorded_assets: bytes) -> None:
    land(settings, recorded_assets, [0, 5])
    run_dbt(settings, "build")
    land(settings, recorded_assets, [10])
    run_dbt(settings, "build")
    checksum = "select count(*), sum(price_usd), sum(rank) from prod.facts_coins"
    incremental = query(settings, checksum)
    run_dbt(settings, "build", "--full-refresh")
    assert query(settings, checksum) == incremental
    assert incremental[0][0] == 300


def test_a_full_build_stores_the_rollups_in_time_order(
    settings: Settings, recorded_assets: bytes
) -> None:
    """DuckDB skips a row group only by its min and max: a full build's hash aggregate left
    every hour in every row group, so each tick's daily rollup, sparkline and duplicate test
    read the whole hourly table (37 of 37 row groups at 90 days)."""
    land(settings, recorded_assets, [0, 60, 120, 180, 240, 300, 360, 420])  # 18:34 to 01:34
    run_dbt(settings, "build", "--full-refresh")
    for table, buckets in (("prod.mart_coin_hourly", 8), ("prod.mart_coin_daily", 2)):
        rows = query(settings, f"select bucket_at from {table} order by rowid")
        stored = [bucket_at for (bucket_at,) in rows]
        assert stored == sorted(stored), table
        assert len(set(stored)) == buckets, table


def test_a_duplicate_loaded_late_fails_the_build(
    settings: Settings, recorded_assets: bytes
) -> None:
    """The uniqueness tests look at recent loads only (flat cost), yet still catch a row that
    repeats an old (coin, snapshot) key."""
    land(settings, recorded_assets, [0, 5])
    run_dbt(settings, "build")
    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.execute(
            "insert into raw.coincap_assets select * replace (now()::timestamp as loaded_at) "
            "from raw.coincap_assets where id = 'bitcoin' and snapshot_at = "
            "(select min(snapshot_at) from raw.coincap_assets)"
        )
    with pytest.raises(AssertionError, match="stg_coinsdata_rules"):
        run_dbt(settings, "build", "--store-failures")
    # the gate's one scan also checks keys; the repeated row breaks no other rule
    assert broken_rules(settings, "stg_coinsdata_rules") == {"duplicate_coin_id_snapshot_at"}


def test_the_health_page_judges_freshness_by_dbt_source_freshness(
    settings: Settings, recorded_assets: bytes
) -> None:
    """The app reads the freshness rule from `_sources.yml`; real `dbt source freshness`
    on the same data must reach the same verdict at each age."""
    from dbt.cli.main import dbtRunner

    from flows.adapters.dbt_runner import dbt_environment
    from flows.adapters.targets import resolve_target
    from flows.core.settings import PROJECT_ROOT
    from streamlit_app.data import source_freshness_rule

    land(settings, recorded_assets, [0])
    rule = source_freshness_rule()
    target = resolve_target(settings)
    project = str(PROJECT_ROOT / "dbt")
    verdicts = {}
    for age_minutes in (1, 20, 75):
        with duckdb.connect(str(settings.duckdb_path)) as con:
            con.execute(
                "update raw.coincap_assets set loaded_at = "
                "cast(timezone('UTC', now()) as timestamp) - to_minutes(cast(? as integer))",
                [age_minutes],
            )
        with dbt_environment({"DO_NOT_TRACK": "1", **target.dbt_env}):
            try:
                result = dbtRunner().invoke(
                    [
                        *("source", "freshness", "--select", "source:coincap.coincap_assets"),
                        *("--project-dir", project, "--profiles-dir", project, "--quiet"),
                    ]
                )
            finally:
                target.release_dbt()
        (dbt_says,) = [str(r.status) for r in result.result]
        verdicts[age_minutes] = (dbt_says, rule.status(age_minutes))
    assert verdicts == {1: ("pass", "pass"), 20: ("warn", "warn"), 75: ("error", "error")}


def broken_rules(settings: Settings, test: str) -> set[str]:
    """The rules named by the failing rows a `row_rules` test stored (`--store-failures`)."""
    with duckdb.connect(str(settings.duckdb_path)) as con:
        (schema,) = con.execute(
            "select table_schema from information_schema.tables where table_name = ?", [test]
        ).fetchone()
        rows = con.execute(f'select distinct broken_rules from "{schema}"."{test}"').fetchall()
    return {rule for (rules,) in rows for rule in rules.split()}


def test_the_invariants_of_candles_shares_and_ranks_catch_broken_rows(
    settings: Settings, recorded_assets: bytes
) -> None:
    """Each invariant the marts' tests add fails on the defect it is there for: a candle whose
    open lies above its high, dominances that add up past 100 %, two coins with one rank (a
    warning: the source's slip, shown, never holding the build)."""
    land(settings, recorded_assets, [0, 5])
    run_dbt(settings, "build")
    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.execute(
            "update prod.mart_coin_hourly set open_price_usd = high_price_usd * 2 "
            "where coin_id = 'bitcoin'"
        )
    with pytest.raises(AssertionError, match="mart_coin_hourly_rules"):
        run_dbt(settings, "test", "--select", "mart_coin_hourly", "--store-failures")
    assert broken_rules(settings, "mart_coin_hourly_rules") == {
        "open_and_close_within_low_and_high"
    }

    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.execute("update prod.mart_market_overview set btc_dominance_pct = 70, "
                    "eth_dominance_pct = 40")  # fmt: skip
    with pytest.raises(AssertionError, match="mart_market_overview_rules"):
        run_dbt(settings, "test", "--select", "mart_market_overview", "--store-failures")
    assert broken_rules(settings, "mart_market_overview_rules") == {"dominances_within_the_total"}

    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.execute("update prod.facts_coins set rank = 1 where coin_id = 'ethereum'")
    results = run_dbt(settings, "test", "--select", "facts_coins")
    warned = [r.node for r in results if r.status == "warn"]
    assert len(warned) == 1 and warned[0].startswith("no_duplicate_keys_facts_coins_snapshot_at")


def test_a_build_reads_recent_rows_only_and_a_late_file_still_reaches_every_model_once(
    settings: Settings, recorded_assets: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build's filters on new rows carry a bound on time too (the recent span: the day
    before the newest lake file), which prunes BigQuery's partitions; it holds only for rows
    of files loaded after the last file about an older time. A snapshot from three days
    earlier, loaded late, is read by load sequence alone, reaches the facts and the rollups
    once, and the build after it is pruned again."""
    from datetime import UTC, datetime

    from flows.core.loading import recent_since
    from testkit.pipeline import tick

    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    compiled = tmp_path / "target/compiled/cryptolytics/models/marts/facts_coins.sql"

    def snapshot(minutes: int) -> tuple[str, int, bytes]:
        at = RECORDED_TIMESTAMP + minutes * MINUTE
        return ("coincap", at, body_variant(recorded_assets, timestamp_ms=at))

    def bound_after(minutes: int) -> str:
        newest = datetime.fromtimestamp((RECORDED_TIMESTAMP + minutes * MINUTE) / 1000, UTC)
        return f"snapshot_at >= timestamp '{recent_since(newest):%Y-%m-%d %H:%M:%S}'"

    tick(settings, [snapshot(0)])
    tick(settings, [snapshot(5)])
    assert bound_after(5) in compiled.read_text()  # a tick like the schedule's: pruned
    late = -3 * 24 * 60
    tick(settings, [snapshot(late), snapshot(10)])
    assert "snapshot_at >=" not in compiled.read_text()  # the late file: by load_seq alone
    tick(settings, [snapshot(15)])
    assert bound_after(15) in compiled.read_text()

    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        facts = con.execute(
            "select count(*), count(distinct (coin_id, snapshot_at)), count(distinct snapshot_at)"
            " from prod.facts_coins"
        ).fetchone()
        assert facts == (500, 500, 5)  # five snapshots of 100 assets, each once
        late_at = datetime.fromtimestamp((RECORDED_TIMESTAMP + late * MINUTE) / 1000, UTC)
        for model, unit in (("mart_coin_hourly", "hour"), ("mart_coin_daily", "day")):
            (rows,) = con.execute(
                f"select count(*) from prod.{model} where bucket_at = date_trunc('{unit}', $at)",
                {"at": late_at.replace(tzinfo=None)},
            ).fetchone()
            assert rows == 100, model
        assert con.execute("select count(*) from prod.mart_market_overview").fetchone() == (5,)
