"""The benchmark suite behind `make bench`: prints a table, writes bench/results/suite.json.

    python -m bench.suite [--sizes 1 7 30 90] [--ticks 20] [--quick]

What runs, all on this machine, against 127.0.0.1 only:

1. Tick latency with 1 day of history: `--ticks` ticks of a deployment run by our warm
   worker (`prefect worker start` on a `cryptolytics` pool, what production and `make up`
   run) and 5 by Prefect's process worker, p50/p95 of scheduled -> completed; `--ticks`
   warm in-process ticks (`pipeline()` called again and again in one process) with each
   stage (fetch, validate, lake write, load, dbt, publish); 3 ad-hoc CLI runs
   (`python -m flows.pipeline`, wall time of the whole process).
2. Cost as history grows: for each of `--sizes` days of 5-minute history for 2,000 coins,
   our tick (warm, 5 ticks, p50 and peak RSS of the tick process), the seed design's tick
   (every model rebuilt as a table: the same tick with `full_refresh`, 2 ticks, 1 at the
   largest size), their ratio, and each app page's queries (p50/p95, cold cache).
3. Load throughput: one day of snapshots (288 files x 2,000 assets) landing at once after
   an outage, loaded by the real loader.
4. The first minute (bench/first_minute.py): a fresh clone's `make up` with a warm package
   cache, and its restart, to each milestone.

The API is the bundled replay, served on 127.0.0.1 by the replay server each tick starts (the
same HTTP client path as live): real late-2021 prices, 2,000 assets a tick. History is generated
as in bench.app_queries (real replay prices at 5-minute steps with a small random walk),
moved in time to end just before the first tick. Nothing here is shown as live data.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.app_queries import BENCH_DIR, generate_history, generate_rates, measure
from flows.core.settings import PROJECT_ROOT
from flows.runtime.stack import wait_healthy
from testkit.pages import page_queries

COINS = 2000
POOL_TYPE = "cryptolytics"  # our warm worker (flows/runtime/warm_worker.py)
TICK_START_DAY = 300  # replay day index: every day from here on has 2,000 coins
TARGETS = {
    "deployment_tick_p50_s": 5.0,
    "work_p50_s": 2.0,
    "stage_p50_s": 1.0,
    "flat_ratio_90_vs_1": 1.25,
    "seed_speedup_30d": 10.0,
    "app_p95_ms": 150.0,
    "peak_rss_mb": 500.0,
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def median_of(ticks: list[dict[str, float]], key: str) -> float:
    return round(statistics.median(t[key] for t in ticks), 3)


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 3), "p95": round(pct(values, 0.95), 3)}


@contextlib.contextmanager
def prefect_server(root: Path) -> Iterator[str]:
    """A Prefect server of our own for the run (PREFECT_HOME under `root`)."""
    port = 4300 + os.getpid() % 500
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(root / "prefect"), "PREFECT_API_URL": url}
    with open(root / "prefect-server.log", "ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            wait_healthy(url, server, root / "prefect-server.log", timeout=180)
            yield url
        finally:
            server.terminate()
            server.wait(30)


def workspace_env(root: Path, api_url: str) -> dict[str, str]:
    return {
        "PREFECT_API_URL": api_url,
        "PREFECT_HOME": str(root.parent / "prefect"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "CRYPTOLYTICS_LAKE_URL": str(root / "lake"),
        "CRYPTOLYTICS_DUCKDB_PATH": str(root / "warehouse.duckdb"),
        "CRYPTOLYTICS_SERVING_DIR": str(root / "serving"),
        "CRYPTOLYTICS_SOURCE": "replay",
        "CRYPTOLYTICS_COINCAP_API_KEY": "",
        "CRYPTOLYTICS_ASSET_LIMIT": str(COINS),
        "DO_NOT_TRACK": "1",
    }


def prepare(root: Path, env: dict[str, str], days: int) -> dict[str, Any]:
    """History of `days` days in raw, every model built once, a serving copy published, and
    the replay day before TICK_START_DAY in the lake, so ticks replay from there on."""
    from flows.adapters.duckdb_warehouse import DuckDBWarehouse
    from flows.adapters.lake import Lake
    from flows.adapters.serving import publish
    from flows.core.loading import load_pending
    from flows.core.settings import Settings
    from flows.replay.dataset import shared_dataset
    from flows.replay.server import assets_body
    from testkit.pipeline import run_dbt

    os.environ.update(env)
    settings = Settings(warehouse_memory_limit="4GB")  # a first full build of long history
    dataset = shared_dataset()
    # a minute before the first tick's day: after the generated history, and the replay
    # continues with the next day
    at = dataset.days[TICK_START_DAY] - 60_000
    rows = dataset.assets(dataset.days[TICK_START_DAY - 1], limit=COINS)
    lake = Lake(settings.lake_url)
    lake.write_snapshot("replay", at, assets_body(at, rows))
    with DuckDBWarehouse(settings.duckdb_path) as warehouse:
        load_pending(lake, warehouse)
    started = time.perf_counter()
    history_rows = generate_history(
        settings.duckdb_path, days, COINS, end_ms=dataset.days[TICK_START_DAY] - 60_000
    )
    generate_rates(settings.duckdb_path)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    run_dbt(settings, "build", "--exclude", "resource_type:unit_test")
    built = time.perf_counter() - started
    publish(settings.duckdb_path.resolve(), settings.serving_dir.resolve(), full=True)
    return {
        "raw_rows": history_rows,
        "generate_s": round(generated, 1),
        "first_build_s": round(built, 1),
    }


def run_worker(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.tick", *args],
        env={**os.environ, **env}, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"bench.tick {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cli_ticks(env: dict[str, str], count: int) -> list[float]:
    """Ad-hoc `python -m flows.pipeline`: the whole process, wall time."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "flows.pipeline"], env={**os.environ, **env}, cwd=PROJECT_ROOT,
            check=True, capture_output=True,
        )  # fmt: skip
        times.append(time.perf_counter() - started)
    return times


def app_pages(env: dict[str, str], repeats: int) -> dict[str, dict[str, float]]:
    import streamlit as st

    os.environ.update(env)
    st.cache_resource.clear()
    return {
        page: {k: round(v, 1) for k, v in figures.items()}
        for page, figures in measure(page_queries(), repeats).items()
    }


def load_throughput(root: Path) -> dict[str, Any]:
    """288 lake files of 2,000 assets (one day at 5-minute steps) loaded in one go."""
    from flows.adapters.duckdb_warehouse import DuckDBWarehouse
    from flows.adapters.lake import Lake
    from flows.core.loading import load_pending
    from flows.replay.dataset import shared_dataset
    from flows.replay.server import assets_body

    dataset = shared_dataset()
    day = dataset.days[TICK_START_DAY]
    assets = dataset.assets(day, limit=COINS)
    lake = Lake(str(root / "lake"))
    for step in range(288):
        lake.write_snapshot(
            "coincap", day + step * 300_000, assets_body(day + step * 300_000, assets)
        )
    with DuckDBWarehouse(root / "warehouse.duckdb") as warehouse:
        started = time.perf_counter()
        result = load_pending(lake, warehouse)
        seconds = time.perf_counter() - started
    return {
        "files": result.files_loaded,
        "rows": result.rows_loaded,
        "seconds": round(seconds, 2),
        "rows_per_s": round(result.rows_loaded / seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 7, 30, 90])
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=10, help="runs per app page")
    parser.add_argument("--quick", action="store_true", help="sizes 1 7, 5 ticks (a smoke run)")
    parser.add_argument("--keep", action="store_true", help="keep the workspaces (GBs at 90d)")
    parser.add_argument(
        "--ticks-only", action="store_true", help="part 1 only; writes bench/results/ticks.json"
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.ticks, args.repeats = [1, 7], 5, 3
    started = time.perf_counter()
    results: dict[str, Any] = {"coins": COINS, "machine": {"cpus": os.cpu_count()}}
    base = Path(tempfile.mkdtemp(prefix="cryptolytics-bench-"))
    with prefect_server(base) as api_url:
        print(f"Prefect server up; workspaces in {base}", flush=True)
        growth: dict[int, dict[str, Any]] = {}
        for days in sorted(set(args.sizes) | {1}):
            root = base / f"history-{days}d"
            root.mkdir()
            env = workspace_env(root, api_url)
            point = prepare(root, env, days)
            if days == 1:
                warm = run_worker(env, "--ticks", str(args.ticks))
                production = run_worker(env, "--ticks", str(args.ticks), "--worker", POOL_TYPE)
                cold = run_worker(env, "--ticks", "5", "--worker", "process")["ticks"]
                results["tick"] = {
                    "warm_ticks": args.ticks,
                    "warm": {k: summary([t[k] for t in warm["ticks"]]) for k in warm["ticks"][0]},
                    "warm_peak_rss_mb": warm["peak_rss_mb"],
                    "warm_first_tick": warm["first_tick"],
                    "worker": summary([t["latency"] for t in production["ticks"]]),
                    "cold": summary([t["latency"] for t in cold]),
                    "cli": summary(cli_ticks(env, 3)),
                }
                ours = {"ticks": warm["ticks"][-5:], "peak_rss_mb": warm["peak_rss_mb"]}
                if args.ticks_only:
                    break
            else:
                ours = run_worker(env, "--ticks", "5")
            seed_ticks = "1" if days == max(args.sizes) and days > 30 else "2"
            # the seed design rebuilds everything: give it the memory that needs (4 GB) rather
            # than make it spill under our 128 MB tick limit
            seed_env = {**env, "CRYPTOLYTICS_WAREHOUSE_MEMORY_LIMIT": "4GB"}
            seed = run_worker(seed_env, "--ticks", seed_ticks, "--full-refresh")
            point.update(
                tick_p50_s=median_of(ours["ticks"], "latency"),
                dbt_p50_s=median_of(ours["ticks"], "dbt"),
                stages_p50_s={
                    stage: median_of(ours["ticks"], stage)
                    for stage in ours["ticks"][0]
                    if stage != "latency"
                },
                peak_rss_mb=ours["peak_rss_mb"],
                seed_tick_p50_s=median_of(seed["ticks"], "latency"),
                seed_peak_rss_mb=seed["peak_rss_mb"],
                app_ms=app_pages(env, args.repeats),
            )
            point["seed_over_ours"] = round(point["seed_tick_p50_s"] / point["tick_p50_s"], 1)
            growth[days] = point
            print(f"history {days}d done: {json.dumps(point)[:300]}", flush=True)
        results["growth"] = growth
    if args.ticks_only:
        shutil.rmtree(base, ignore_errors=True)
        results["suite_seconds"] = round(time.perf_counter() - started)
        report_ticks(results["tick"])
        out = BENCH_DIR / "results" / "ticks.json"
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {out.relative_to(PROJECT_ROOT)} in {results['suite_seconds']} s")
        return
    load_root = base / "load"
    load_root.mkdir()
    results["load"] = load_throughput(load_root)
    results["first_minute"] = first_minute()
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    results["suite_seconds"] = round(time.perf_counter() - started)
    report(results)
    out = BENCH_DIR / "results" / "suite.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(PROJECT_ROOT)} in {results['suite_seconds']} s")


def first_minute() -> list[dict[str, Any]]:
    """4. A new user's `make up` from a fresh clone with a warm package cache, then a
    restart (bench/first_minute.py, in its own process: it runs `make` in a clone)."""
    subprocess.run(
        [sys.executable, "-m", "bench.first_minute", "--cache", "warm", "--restart"],
        cwd=PROJECT_ROOT, check=True,
    )  # fmt: skip
    runs = json.loads((BENCH_DIR / "results" / "first_minute.json").read_text())["runs"]
    return [{k: v for k, v in run.items() if k != "terminal"} for run in runs]


def report_ticks(tick: dict[str, Any]) -> None:
    warm = tick["warm"]

    def row(label: str, figures: dict[str, float], note: str = "", digits: int = 2) -> None:
        p50, p95 = figures["p50"], figures["p95"]
        print(f"{label:<34}{p50:>8.{digits}f}{p95:>8.{digits}f}  {note}")

    print("\n== Tick, 2,000 assets, 1 day of history ==")
    print(f"{'':<34}{'p50 s':>8}{'p95 s':>8}")
    row("deployment, our warm worker", tick["worker"], "scheduled -> completed; target p50 < 5 s")
    row("deployment, Prefect process worker", tick["cold"], "scheduled -> completed")
    row("in-process, warm (pipeline())", warm["latency"])
    row("ad-hoc CLI (whole process)", tick["cli"])
    row("flow run (work + engine)", warm["flow_run"])
    for stage in ("fetch", "validate", "lake_write", "load", "dbt", "publish"):
        row(f"  {stage}", warm[stage], "target p50 < 1 s", digits=3)
    first = tick["warm_first_tick"]["latency"]
    print(f"first tick of a warm process (parses dbt): {first:.2f} s")
    print(f"peak RSS of the warm tick process: {tick['warm_peak_rss_mb']:.0f} MB (target < 500)")


def report(results: dict[str, Any]) -> None:
    report_ticks(results["tick"])
    growth = results["growth"]

    print("\n== Cost as history grows (2,000 coins, 5-minute history) ==")
    header = ("days", "raw rows", "tick p50", "dbt p50", "peak MB", "seed tick", "seed/ours")
    print(f"{header[0]:>5}{header[1]:>13}" + "".join(f"{h:>10}" for h in header[2:]) + "  app p95")
    for days, p in sorted(growth.items()):
        worst = max(f["p95_ms"] for f in p["app_ms"].values())
        print(
            f"{days:>5}{p['raw_rows']:>13,}{p['tick_p50_s']:>10.2f}{p['dbt_p50_s']:>10.2f}"
            f"{p['peak_rss_mb']:>10.0f}{p['seed_tick_p50_s']:>10.2f}{p['seed_over_ours']:>9.1f}x"
            f"  {worst:.0f} ms"
        )
    largest = max(growth)
    flat = growth[largest]["tick_p50_s"] / growth[1]["tick_p50_s"]
    print(f"tick at {largest}d / tick at 1d: {flat:.2f}x (target <= 1.25x)")

    print(f"\n== App pages at {largest} days (cold cache, target p95 < 150 ms) ==")
    for page, f in growth[largest]["app_ms"].items():
        print(f"  {page:<26}p50 {f['p50_ms']:>7.1f} ms   p95 {f['p95_ms']:>7.1f} ms")
    load = results["load"]
    print(
        f"\n== Backlog load: {load['files']} files, {load['rows']:,} rows "
        f"in {load['seconds']} s = {load['rows_per_s']:,} rows/s =="
    )
    print("\n== First minute: `make up` from a fresh clone (s since `make up`) ==")
    for run in results["first_minute"]:
        marks = "  ".join(f"{m} {run[m]}" for m in ("installed", "ui", "app", "first_data"))
        print(f"  {run['run']:<8}{marks}  (first data target < {run['target_first_data_s']:.0f} s)")


if __name__ == "__main__":
    main()
