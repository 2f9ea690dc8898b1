"""Benchmark: the analyst app's queries over 30 days of 5-minute history for 2,000 coins.

    python -m bench.app_queries [--days 30] [--coins 2000] [--repeats 20]

How the history is made (honest, not invented): the real daily prices, market caps and
volumes of the bundled replay (CoinGecko, the last days of 2021) are spread over 5-minute steps
by geometric interpolation between one day's price and the next, with a small random walk
on top (0.1 % per step, pinned to the real close at each day's end). Ranks, supply and
volume are the day's real values. The rows go straight into `raw.coincap_assets` (the
lake and loader are measured elsewhere), then the real dbt project builds every model and
the real publish step makes the serving copy the app reads.

Each page's queries run through the app's own data module with its cache cleared before
every run, so the figures are cold queries, not cache hits. Prints a table and writes
bench/results/app_queries.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

BENCH_DIR = Path(__file__).resolve().parent
TARGET_P95_MS = 150


def generate_history(warehouse: Path, days: int, coins: int, end_ms: int | None = None) -> int:
    """Fill raw.coincap_assets with `days` days of 5-minute snapshots; returns rows. With
    `end_ms`, the series is moved in time to end one step before it (so ticks replayed
    after it are newer than all of it). Each synthetic snapshot takes the next load
    sequence number, given out as the loader gives them (raw.load_sequence), so a file
    loaded after it is newer to every incremental model and data test, as in production."""
    from flows.adapters.duckdb_warehouse import DUCKDB_NEXT_SEQ, DuckDBWarehouse
    from flows.replay.dataset import DATASET_PATH

    last_ms = duckdb.sql(f"select max(day_ms) from read_parquet('{DATASET_PATH}')").fetchall()[0][0]
    shift_ms = 0 if end_ms is None else end_ms - (last_ms + 288 * 300000)
    with DuckDBWarehouse(warehouse) as wh:
        wh.con.execute("select setseed(0.42)")
        next_seq = wh.con.execute(DUCKDB_NEXT_SEQ).fetchall()[0][0]
        wh.con.execute(
            f"""
            insert into raw.coincap_assets
            with days as (
                select *, lead(price_usd) over (partition by id order by day_ms) as next_price
                from read_parquet('{DATASET_PATH}')
                where rank <= {coins}
                  -- the year's last days: by then 2,000 coins have a price every day
                  and day_ms > (select max(day_ms) from read_parquet('{DATASET_PATH}'))
                              - {days}::bigint * 86400000
            ),
            steps as (
                select days.*, step,
                       day_ms + step * 300000 + {shift_ms} as ts_ms,
                       -- geometric path from today's price to tomorrow's
                       price_usd * pow(coalesce(next_price, price_usd) / price_usd, step / 288.0)
                           as path_price
                from days, range(288) as t(step)
            )
            select
                make_timestamp(ts_ms * 1000) as snapshot_at,
                id, rank, symbol, name,
                market_cap_usd / price_usd as supply,
                null as max_supply,
                market_cap_usd / price_usd * path_price * noise as market_cap_usd,
                volume_usd_24hr,
                path_price * noise as price_usd,
                null as change_percent_24hr,
                null as vwap_24hr,
                null as explorer,
                'replay' as source,
                'bench/' || ts_ms as lake_path,
                make_timestamp(ts_ms * 1000) as loaded_at,
                -- one load per synthetic snapshot, in time order, after any load before it
                dense_rank() over (order by ts_ms) + {next_seq} - 1 as load_seq
            from (
                -- a random walk of +-0.1 % a step, bridged back to 1 at each day's end
                select *, exp(sum(0.001 * (random() - 0.5) * 2)
                              over (partition by id, day_ms order by step)
                              * (1 - step / 288.0)) as noise
                from steps
            )
            """
        )
        wh.con.execute(
            "update raw.load_sequence set issued = "
            "(select max(load_seq) from raw.coincap_assets) where issued < "
            "(select max(load_seq) from raw.coincap_assets)"
        )
        return wh.con.execute("select count(*) from raw.coincap_assets").fetchall()[0][0]


# CoinCap's own example `/rates` body (tests/fixtures, credited in the README): its fiat
# rates, held constant, stand for each hour's `/rates` in the benchmark's history
EXAMPLE_RATES = BENCH_DIR.parent / "tests" / "fixtures" / "coincap" / "v2_rates_2018-08-06.json"


def generate_rates(warehouse: Path) -> int:
    """Fill raw.coincap_rates with one `/rates` answer an hour over the generated history,
    every rate CoinCap's example value (constant: the Coin and Compare pages' fiat queries
    read as many rows as live ones would, the values do not matter to their cost)."""
    from flows.adapters.duckdb_warehouse import DuckDBWarehouse
    from flows.core.rates import parse_rates

    rates = parse_rates(EXAMPLE_RATES.read_bytes()).rates
    with DuckDBWarehouse(warehouse) as wh:
        wh.con.execute(
            "create temporary table example_rates (id varchar, symbol varchar, "
            "currency_symbol varchar, type varchar, rate_usd double)"
        )
        wh.con.executemany(
            "insert into example_rates values (?, ?, ?, ?, ?)",
            [(r.id, r.symbol, r.currency_symbol, r.type, r.rate_usd) for r in rates],
        )
        wh.con.execute(
            """
            insert into raw.coincap_rates
            with hours as (
                select unnest(generate_series(
                    date_trunc('hour', min(snapshot_at)), max(snapshot_at), interval 1 hour
                )) as rates_at
                from raw.coincap_assets
            )
            select hours.rates_at, example_rates.*, 'coincap', 'bench/rates', hours.rates_at,
                   (select max(load_seq) from raw.coincap_assets)
            from hours, example_rates
            """
        )
        return wh.con.execute("select count(*) from raw.coincap_rates").fetchall()[0][0]


def build_models(settings) -> float:
    from testkit.pipeline import run_dbt  # the same runner the tests use: plain dbt, no engine

    started = time.perf_counter()
    run_dbt(settings, "build", "--exclude", "resource_type:test", "resource_type:unit_test")
    return time.perf_counter() - started


def measure(pages: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict[str, float]]:
    import streamlit as st

    results = {}
    for name, run in pages.items():
        timings = []
        for _ in range(repeats):
            st.cache_data.clear()
            started = time.perf_counter()
            run()
            timings.append((time.perf_counter() - started) * 1000)
        timings.sort()
        results[name] = {
            "p50_ms": statistics.median(timings),
            "p95_ms": timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))],
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--coins", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the data here")
    parser.add_argument(
        "--sort-ab",
        action="store_true",
        help="then time the pages on a copy whose per-coin tables are in time order (A, B, A)",
    )
    args = parser.parse_args()

    root = args.workdir or Path(tempfile.mkdtemp(prefix="cryptolytics-bench-"))
    try:
        run(args, root)
    finally:
        if args.workdir is None:  # 90 days is 4.5 GB: a run leaves nothing behind
            shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace, root: Path) -> None:
    os.environ.update(
        CRYPTOLYTICS_DUCKDB_PATH=str(root / "warehouse.duckdb"),
        CRYPTOLYTICS_SERVING_DIR=str(root / "serving"),
        CRYPTOLYTICS_LAKE_URL=str(root / "lake"),
        DO_NOT_TRACK="1",
    )
    # the first build is a full refresh of all the history at once (a tick builds only its
    # batch within the default 128MB); as the README says, raise the limit for that
    os.environ.setdefault("CRYPTOLYTICS_WAREHOUSE_MEMORY_LIMIT", "4GB")
    from flows.adapters.serving import publish
    from flows.core.settings import get_settings

    settings = get_settings()
    started = time.perf_counter()
    rows = generate_history(settings.duckdb_path, args.days, args.coins)
    generated = time.perf_counter() - started
    print(f"generated {rows:,} 5-minute rows in {generated:.1f}s")
    print(f"generated {generate_rates(settings.duckdb_path):,} hourly fiat rates")
    built = build_models(settings)
    print(f"dbt build (first, full) in {built:.1f}s")
    started = time.perf_counter()
    publish(settings.duckdb_path.resolve(), settings.serving_dir.resolve(), full=True)
    published = time.perf_counter() - started
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        sizes = dict(
            con.execute(
                "select table_name, estimated_size from duckdb_tables() where schema_name = 'prod'"
            ).fetchall()
        )
    from testkit.pages import page_queries

    results = measure(page_queries(), args.repeats)

    print(
        f"\nApp queries, {args.days} days x {args.coins} coins "
        f"({sizes.get('facts_coins', 0):,} fact rows), {args.repeats} cold runs each:"
    )
    print(f"{'page':<24}{'p50 ms':>10}{'p95 ms':>10}  target p95 < {TARGET_P95_MS} ms")
    for name, figures in results.items():
        verdict = "ok" if figures["p95_ms"] < TARGET_P95_MS else "MISSED"
        print(f"{name:<24}{figures['p50_ms']:>10.1f}{figures['p95_ms']:>10.1f}  {verdict}")
    out = BENCH_DIR / "results" / "app_queries.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "days": args.days,
                "coins": args.coins,
                "repeats": args.repeats,
                "fact_rows": sizes.get("facts_coins"),
                "model_rows": sizes,
                "generate_seconds": round(generated, 1),
                "dbt_build_seconds": round(built, 1),
                "publish_seconds": round(published, 1),
                "pages": {k: {m: round(v, 1) for m, v in f.items()} for k, f in results.items()},
                "machine": {"cpus": os.cpu_count()},
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {out.relative_to(BENCH_DIR.parent)}")
    if args.sort_ab:
        sort_ab(settings.serving_dir.resolve(), args.repeats)


def sort_ab(serving_dir: Path, repeats: int) -> None:
    """What sorting the per-coin tables by coin buys, in one run: the published copy (A)
    against the same copy with those tables in load order, as ticks append them (B), in the
    other serving slot; readers are pointed at A, B, then A again. For a bench workdir only:
    it overwrites the other slot."""
    from flows.adapters.serving import POINTER, SERVED_TABLES, current_copy
    from testkit.pages import page_queries

    published = current_copy(serving_dir)
    assert published is not None
    other = "b" if published.stem == "a" else "a"
    shutil.copyfile(published, serving_dir / f"{other}.duckdb")
    with duckdb.connect(str(serving_dir / f"{other}.duckdb")) as con:
        for table in (t for t in SERVED_TABLES if t.clustered):
            con.execute(
                f"create or replace table {table.name} as "
                f"select * from {table.name} order by load_seq, coin_id"
            )
    pages = page_queries()
    runs = []
    for slot in (published.stem, other, published.stem):
        (serving_dir / POINTER).write_text(slot)
        runs.append(measure(pages, repeats))
    print(f"\n{'page':<32}{'A p95':>9}{'B p95':>9}{'A again':>9}{'B / best A':>12}")
    for name in pages:
        a, b, a2 = (run[name]["p95_ms"] for run in runs)
        print(f"{name:<32}{a:>9.1f}{b:>9.1f}{a2:>9.1f}{b / min(a, a2):>12.2f}")


if __name__ == "__main__":
    main()
