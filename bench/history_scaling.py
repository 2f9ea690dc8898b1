"""Benchmark: does a 5-minute tick stay cheap as history grows, and what do rollups buy?

    python -m bench.history_scaling [--days 30 365] [--ticks 3]

For each history size it generates 5-minute history the same way as bench.app_queries
(real replay prices spread over 5-minute steps with a small random walk), builds every model
once, then adds one 5-minute snapshot at a time and runs the incremental `dbt build`,
reporting the rollup models' own times (median over `--ticks`). It also times the app's
1Y coin series read from the daily rollup against the same series computed from the
5-minute fact, which is what the app would scan without rollups. Writes
bench/results/history_scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import duckdb

from bench.app_queries import BENCH_DIR, generate_history

ROLLUP_MODELS = ("facts_coins", "mart_coin_hourly", "mart_coin_daily", "mart_market_overview")
ADD_SNAPSHOT = """
insert into raw.coincap_assets
select snapshot_at + interval 5 minute, id, rank, symbol, name, supply, max_supply,
       market_cap_usd * 1.001, volume_usd_24hr, price_usd * 1.001, change_percent_24hr,
       vwap_24hr, explorer, source, lake_path || '+5m', now()::timestamp,
       (select max(load_seq) + 1 from raw.coincap_assets)
from raw.coincap_assets
where snapshot_at = (select max(snapshot_at) from raw.coincap_assets)
"""
YEAR_FROM_FACTS = """
select date_trunc('day', snapshot_at) as day, arg_max(price_usd, snapshot_at) as close
from prod.facts_coins
where coin_id = 'ethereum' and snapshot_at > (select max(snapshot_at) from prod.facts_coins)
      - interval 365 day
group by 1 order by 1
"""
YEAR_FROM_ROLLUP = """
select bucket_at as day, close_price_usd as close
from prod.mart_coin_daily
where coin_id = 'ethereum' and bucket_at > (select max(bucket_at) from prod.mart_coin_daily)
      - interval 365 day
order by 1
"""


def timed_query(path: Path, sql: str, repeats: int = 10) -> float:
    """p50 milliseconds of a query on an open read-only connection."""
    with duckdb.connect(str(path), read_only=True) as con:
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            con.execute(sql).fetchall()
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def measure(days: int, ticks: int, root: Path) -> dict[str, object]:
    from flows.adapters.duckdb_warehouse import DuckDBWarehouse
    from flows.core.settings import Settings
    from testkit.pipeline import run_dbt

    os.environ.update(
        CRYPTOLYTICS_DUCKDB_PATH=str(root / "warehouse.duckdb"),
        CRYPTOLYTICS_SERVING_DIR=str(root / "serving"),
        CRYPTOLYTICS_LAKE_URL=str(root / "lake"),
    )
    settings = Settings()
    started = time.perf_counter()
    rows = generate_history(settings.duckdb_path, days, 2000)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    run_dbt(settings, "build", "--exclude", "resource_type:test", "resource_type:unit_test")
    first_build = time.perf_counter() - started
    per_model: dict[str, list[float]] = {name: [] for name in ROLLUP_MODELS}
    builds = []
    for _ in range(ticks):
        with DuckDBWarehouse(settings.duckdb_path) as warehouse:
            warehouse.con.execute(ADD_SNAPSHOT)
        started = time.perf_counter()
        results = run_dbt(settings, "build")
        builds.append(time.perf_counter() - started)
        for result in results:
            if result.node in per_model:
                per_model[result.node].append(result.seconds)
    figures = {
        "days": days,
        "fact_rows": rows,
        "generate_seconds": round(generated, 1),
        "first_build_seconds": round(first_build, 1),
        "tick_dbt_build_seconds_p50": round(statistics.median(builds), 2),
        "tick_model_seconds_p50": {k: round(statistics.median(v), 3) for k, v in per_model.items()},
        "app_1y_series_ms_from_facts": round(timed_query(settings.duckdb_path, YEAR_FROM_FACTS), 1),
        "app_1y_series_ms_from_rollup": round(
            timed_query(settings.duckdb_path, YEAR_FROM_ROLLUP), 1
        ),
    }
    print(json.dumps(figures, indent=2))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, nargs="+", default=[30, 365])
    parser.add_argument("--ticks", type=int, default=3)
    args = parser.parse_args()
    os.environ["DO_NOT_TRACK"] = "1"
    results = []
    for days in args.days:
        with tempfile.TemporaryDirectory(prefix=f"cryptolytics-{days}d-") as tmp:
            results.append(measure(days, args.ticks, Path(tmp)))
    print(
        f"\n{'history':>8}{'fact rows':>14}{'tick dbt s':>12}{'hourly s':>10}{'daily s':>9}"
        f"{'1Y facts ms':>13}{'1Y rollup ms':>14}"
    )
    for r in results:
        models = r["tick_model_seconds_p50"]
        print(
            f"{r['days']:>7}d{r['fact_rows']:>14,}{r['tick_dbt_build_seconds_p50']:>12}"
            f"{models['mart_coin_hourly']:>10}{models['mart_coin_daily']:>9}"
            f"{r['app_1y_series_ms_from_facts']:>13}{r['app_1y_series_ms_from_rollup']:>14}"
        )
    out = BENCH_DIR / "results" / "history_scaling.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps({"runs": results, "machine": {"cpus": os.cpu_count()}}, indent=2) + "\n"
    )
    print(f"\nwrote {out.relative_to(BENCH_DIR.parent)}")


if __name__ == "__main__":
    main()
