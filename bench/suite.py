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
3. Backlog: one day of snapshots (288 files x 2,000 assets) in the lake at once after an
   outage, then one tick: loaded, built and published by the real flow.
4. dbt inside Prefect (bench/dbt_runners.py): our runner against prefect-dbt's
   PrefectDbtRunner and PrefectDbtOrchestrator on the same tick's build.
5. The first minute (bench/first_minute.py): a fresh clone's `make up` with a warm package
   cache, and its restart, to each milestone.

The ticks take the live path (source `coincap`, `/assets` then `/rates`) against a stand-in
for CoinCap on 127.0.0.1 (bench/live_like.py): real late-2021 prices for 2,000 assets, each
answer stamped with the time it is asked for, so a tick moves history on by the few seconds
between ticks as a live one moves it by 5 minutes (the replay moves a day a tick, which would
time a day's worth of serving-window churn per tick). History is generated as in
bench.app_queries (real replay prices at 5-minute steps with a small random walk, an hourly
`/rates` answer), moved in time to end just before the first tick. It all lives in temporary
workspaces; nothing here is shown as live data.
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
from bench.live_like import serve_live_like
from flows.core.settings import PROJECT_ROOT
from flows.runtime.stack import wait_healthy
from testkit.pages import page_queries
from testkit.signals import restore_sigint

COINS = 2000
POOL_TYPE = "cryptolytics"  # our warm worker (flows/runtime/warm_worker.py)
TICK_START_DAY = 300  # replay day index: every day from here on has 2,000 coins
BACKLOG_FILES = 288  # one day of 5-minute snapshots landing at once after an outage


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


def workspace_env(root: Path, api_url: str, live_url: str | None = None) -> dict[str, str]:
    """One benchmark workspace; with `live_url` its ticks take the live path against that
    stand-in for CoinCap (bench/live_like.py), else the bundled replay."""
    live = (
        {
            "CRYPTOLYTICS_SOURCE": "coincap",
            "CRYPTOLYTICS_COINCAP_BASE_URL": live_url,
            "CRYPTOLYTICS_COINCAP_API_KEY": "bench-stand-in-not-a-key",
        }
        if live_url
        else {}
    )
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
        **live,
    }


def prepare(
    root: Path, env: dict[str, str], days: int, end_ms: int | None = None
) -> dict[str, Any]:
    """History of `days` days in raw, every model built once, a serving copy published, and
    one snapshot in the lake: the replay day before TICK_START_DAY (so replay ticks go on
    from there), or, for live-shaped ticks, that day's prices at `end_ms`, after which the
    ticks' snapshots come (the history ends 5 minutes before it)."""
    from flows.adapters.duckdb_warehouse import DUCKDB_NEXT_SEQ, DuckDBWarehouse
    from flows.adapters.lake import Lake
    from flows.adapters.serving import publish
    from flows.core.loading import BuildScope, load_pending
    from flows.core.settings import Settings
    from flows.replay.dataset import shared_dataset
    from flows.replay.server import assets_body
    from testkit.pipeline import run_dbt

    os.environ.update(env)
    settings = Settings(warehouse_memory_limit="4GB")  # a first full build of long history
    dataset = shared_dataset()
    # a minute before the first tick's day: after the generated history, and the replay
    # continues with the next day
    at = dataset.days[TICK_START_DAY] - 60_000 if end_ms is None else end_ms
    rows = dataset.assets(dataset.days[TICK_START_DAY - 1], limit=COINS)
    lake = Lake(settings.lake_url)
    lake.write_snapshot("replay" if end_ms is None else "coincap", at, assets_body(at, rows))
    with DuckDBWarehouse(settings.duckdb_path) as warehouse:
        load_pending(lake, warehouse)
    started = time.perf_counter()
    history_rows = generate_history(settings.duckdb_path, days, COINS, end_ms=at)
    generate_rates(settings.duckdb_path)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    nodes = run_dbt(settings, "build", "--exclude", "resource_type:unit_test")
    built = time.perf_counter() - started
    with DuckDBWarehouse(settings.duckdb_path) as warehouse:
        # a passing build of all of it, as the ticks that loaded it would have left: the
        # first tick tests its own rows, not the generated history
        (next_seq,) = warehouse.con.execute(DUCKDB_NEXT_SEQ).fetchone()
        warehouse.record_dbt_results(nodes, BuildScope(after_seq=0, covered_seq=next_seq - 1))
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


def backlog(base: Path, api_url: str) -> dict[str, Any]:
    """A day of history, then the day after it: BACKLOG_FILES snapshots of 2,000 assets 5
    minutes apart, fetched while the warehouse was down (in the lake, not loaded), then the
    first tick after the outage in a fresh process: it loads them all and its own, builds and
    publishes. Its wall time and stages."""
    from flows.adapters.lake import Lake
    from flows.replay.dataset import shared_dataset
    from flows.replay.server import assets_body

    root = base / "backlog"
    root.mkdir()
    outage_ms = BACKLOG_FILES * 300_000
    with serve_live_like(TICK_START_DAY, COINS) as live_url:
        env = workspace_env(root, api_url, live_url)
        prepare(root, env, 1, end_ms=now_ms() - outage_ms - 300_000)
        dataset = shared_dataset()
        lake = Lake(str(root / "lake"))
        start = now_ms() - outage_ms
        for step in range(BACKLOG_FILES):
            at = start + step * 300_000
            day = dataset.days[TICK_START_DAY - 1 - step % 30]  # a month of real prices
            lake.write_snapshot("coincap", at, assets_body(at, dataset.assets(day, limit=COINS)))
        tick = run_worker(env, "--ticks", "0")["first_tick"]
    return {"files": BACKLOG_FILES, "rows": BACKLOG_FILES * COINS, **tick}


def now_ms() -> int:
    return int(time.time() * 1000)


def main() -> None:
    restore_sigint()  # the workers and servers we start must stop on SIGINT
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
            live = contextlib.ExitStack()
            env = workspace_env(root, api_url, live.enter_context(serve_live_like(0, COINS)))
            point = prepare(root, env, days, end_ms=now_ms() - 300_000)
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
                    live.close()
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
                work_p50_s=median_of(ours["ticks"], "flow_run"),
                dbt_p50_s=median_of(ours["ticks"], "dbt"),
                publish_p50_s=median_of(ours["ticks"], "publish"),
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
            live.close()
            print(f"history {days}d done: {json.dumps(point)[:300]}", flush=True)
        results["growth"] = growth
        if not args.ticks_only:
            try:
                results["backlog"] = backlog(base, api_url)
            except RuntimeError as exc:  # a failed tick: reported, the rest of the run kept
                results.setdefault("failed_parts", {})["backlog"] = str(exc)[-2000:]
                print(f"bench part backlog failed: {exc}", file=sys.stderr, flush=True)
    if args.ticks_only:
        shutil.rmtree(base, ignore_errors=True)
        results["suite_seconds"] = round(time.perf_counter() - started)
        report_ticks(results["tick"])
        out = BENCH_DIR / "results" / "ticks.json"
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {out.relative_to(PROJECT_ROOT)} in {results['suite_seconds']} s")
        return
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    out = BENCH_DIR / "results" / "suite.json"
    out.parent.mkdir(exist_ok=True)
    # each part in a process of its own: one that fails (no chromium for the first minute,
    # no emulators for the cost model) is reported and the others' figures are kept
    for name, part in (
        ("dbt_runners", dbt_runners),
        ("bigquery_cost", bigquery_cost),
        ("first_minute", first_minute),
    ):
        out.write_text(json.dumps(results, indent=2) + "\n")  # what is measured so far
        try:
            results[name] = part()
        except (subprocess.CalledProcessError, OSError) as exc:
            results.setdefault("failed_parts", {})[name] = str(exc)
            print(f"bench part {name} failed: {exc}", file=sys.stderr, flush=True)
    results["suite_seconds"] = round(time.perf_counter() - started)
    results["targets"] = targets(results)
    out.write_text(json.dumps(results, indent=2) + "\n")
    report(results)
    print(f"\nwrote {out.relative_to(PROJECT_ROOT)} in {results['suite_seconds']} s")


def dbt_runners() -> dict[str, Any]:
    """4. Ours against prefect-dbt's runners (bench/dbt_runners.py, its own process and
    Prefect server: prefect-dbt's runner makes tasks in whatever flow run it finds)."""
    # Prefect reads its settings once, at import: the workspaces' server (gone by now) must not
    # be the one it is given
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CRYPTOLYTICS_"))}
    subprocess.run(
        [sys.executable, "-m", "bench.dbt_runners"], cwd=PROJECT_ROOT, check=True, env=env
    )
    return json.loads((BENCH_DIR / "results" / "dbt_runners.json").read_text())


def bigquery_cost() -> dict[str, Any]:
    """5. The cloud cost model (bench/bigquery_cost.py, its own process: the emulators and a
    Prefect test server of its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CRYPTOLYTICS_"))}
    subprocess.run(
        [sys.executable, "-m", "bench.bigquery_cost"], cwd=PROJECT_ROOT, check=True, env=env
    )
    return json.loads((BENCH_DIR / "results" / "bigquery_cost.json").read_text())


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

    def row(label: str, figures: dict[str, float], digits: int = 2) -> None:
        print(f"{label:<34}{figures['p50']:>8.{digits}f}{figures['p95']:>8.{digits}f}")

    print("\n== Tick, 2,000 assets, 1 day of history ==")
    print(f"{'':<34}{'p50 s':>8}{'p95 s':>8}")
    row("deployment, our warm worker", tick["worker"])
    row("deployment, Prefect process worker", tick["cold"])
    row("in-process, warm (pipeline())", warm["latency"])
    row("ad-hoc CLI (whole process)", tick["cli"])
    row("the work (fetch -> published)", warm["flow_run"])
    for stage in ("fetch", "validate", "lake_write", "load", "dbt", "publish"):
        row(f"  {stage}", warm[stage], digits=3)
    first = tick["warm_first_tick"]["latency"]
    print(f"first tick of a warm process (loads dbt's saved parse): {first:.2f} s")


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets (Performance II), each with what this run measured."""
    growth, tick = results["growth"], results["tick"]
    sizes, largest = sorted(growth), max(growth)
    rows: list[tuple[str, float, str, float]] = [
        ("scheduled tick on our worker, p50 s", tick["worker"]["p50"], "<", 3.0),
    ]
    for days in sizes:
        rows.append((f"tick work at {days}d, p50 s", growth[days]["work_p50_s"], "<", 1.0))
    first, last = growth[sizes[0]], growth[largest]
    for label, key in (("tick", "tick_p50_s"), ("dbt", "dbt_p50_s"), ("publish", "publish_p50_s")):
        rows.append((f"{label} at {largest}d / at {sizes[0]}d", last[key] / first[key], "<=", 1.15))
    if 30 in growth:
        rows.append(("seed design / ours at 30d (tick)", growth[30]["seed_over_ours"], ">=", 10.0))
    rows.append(("peak RSS of the tick, MB", max(p["peak_rss_mb"] for p in growth.values()),
                 "<", 400.0))  # fmt: skip
    if "backlog" in results:
        rows.append(("backlog of 288 files, s", results["backlog"]["latency"], "<", 30.0))
    rows.append(("worst app page p95 at the largest size, ms",
                 max(f["p95_ms"] for f in last["app_ms"].values()), "<", 150.0))  # fmt: skip
    if cost := results.get("bigquery_cost"):
        rows.append(("BigQuery bytes per tick at 365d / at 1d", cost["tick_ratio_365_to_1"],
                     "<=", 1.15))  # fmt: skip
        rows.append(("tick statements reading a growing table whole",
                     len(cost["unbounded_reads_per_tick"]), "<=", 0.0))  # fmt: skip
    checks = {"<": float.__lt__, "<=": float.__le__, ">=": float.__ge__}
    return [
        {"target": name, "measured": round(value, 3), "goal": f"{op} {goal:g}",
         "result": "PASS" if checks[op](float(value), goal) else "MISS"}
        for name, value, op, goal in rows
    ]  # fmt: skip


def report(results: dict[str, Any]) -> None:
    report_ticks(results["tick"])
    growth = results["growth"]

    print("\n== Cost as history grows (2,000 coins, 5-minute history) ==")
    header = ("days", "raw rows", "tick p50", "work p50", "dbt p50", "publish", "peak MB",
              "seed tick", "seed/ours")  # fmt: skip
    print(f"{header[0]:>5}{header[1]:>13}" + "".join(f"{h:>10}" for h in header[2:]) + "  app p95")
    for days, p in sorted(growth.items()):
        worst = max(f["p95_ms"] for f in p["app_ms"].values())
        print(
            f"{days:>5}{p['raw_rows']:>13,}{p['tick_p50_s']:>10.2f}{p['work_p50_s']:>10.2f}"
            f"{p['dbt_p50_s']:>10.2f}{p['publish_p50_s']:>10.2f}{p['peak_rss_mb']:>10.0f}"
            f"{p['seed_tick_p50_s']:>10.2f}{p['seed_over_ours']:>9.1f}x  {worst:.0f} ms"
        )
    largest = max(growth)
    print(f"\n== App pages at {largest} days (cold cache) ==")
    for page, f in growth[largest]["app_ms"].items():
        print(f"  {page:<26}p50 {f['p50_ms']:>7.1f} ms   p95 {f['p95_ms']:>7.1f} ms")
    if backlog := results.get("backlog"):
        print(
            f"\n== Backlog: {backlog['files']} files, {backlog['rows']:,} rows, one tick: "
            f"{backlog['latency']:.1f} s (load {backlog['load']:.1f} s, dbt {backlog['dbt']:.1f} "
            f"s, publish {backlog['publish']:.1f} s) =="
        )
    if "dbt_runners" in results:
        print("\n== dbt inside Prefect: one tick's build, 1 day of history ==")
        runners = results["dbt_runners"]["runners"]
        ours = next(iter(runners.values()))["p50_s"]
        for name, figures in runners.items():
            print(f"  {name:<50}p50 {figures['p50_s']:>6.2f} s  {figures['p50_s'] / ours:>5.1f}x")
    if cost := results.get("bigquery_cost"):
        from bench.bigquery_cost import show

        print("\n== The cloud cost model (derived bytes, on-demand price) ==")
        show(cost)
    if "first_minute" in results:
        print("\n== First minute: `make up` from a fresh clone (s since `make up`) ==")
        for run in results["first_minute"]:
            marks = "  ".join(f"{m} {run[m]}" for m in ("installed", "ui", "app", "first_data"))
            target = run["target_first_data_s"]
            print(f"  {run['run']:<8}{marks}  (first data target < {target:.0f} s)")
    for name, why in results.get("failed_parts", {}).items():
        print(f"\n!! {name} did not run: {why}")
    print("\n== Targets ==")
    for row in results["targets"]:
        print(f"  {row['target']:<46}{row['measured']:>10}  {row['goal']:<8}{row['result']}")


if __name__ == "__main__":
    main()
