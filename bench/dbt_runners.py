"""Our warm dbt runner against what prefect-dbt offers, on the same tick's work, in one run.

    python -m bench.dbt_runners [--rounds 6] [--days 1]

The tick's dbt step builds every model and runs its data tests after one new snapshot is
loaded. Each round loads one more snapshot (2,000 assets, the real loader), then one runner
builds it, inside a Prefect flow as the tick does; the runners take turns (A, B, C, A, B, C...),
so the machine's drift falls on all of them alike. Timed: the build call alone.

- ours: `flows/adapters/dbt_runner.py`, dbtRunner from the warm manifest, one Prefect task
  for the whole build (what the tick runs);
- prefect-dbt `PrefectDbtRunner(manifest=...)`: the same manifest pre-loaded; in a flow it
  makes a Prefect task per node;
- prefect-dbt `PrefectDbtOrchestrator` in `PER_WAVE` mode: one `dbt build` per wave of the
  DAG (its default, "lower overhead"), from manifest.json.

Prints a table and writes bench/results/dbt_runners.json. Nothing here is live data: the
history is generated from the replay (bench.app_queries) and the snapshots are replay days.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.app_queries import BENCH_DIR
from bench.suite import COINS, TICK_START_DAY, prefect_server, prepare, workspace_env
from flows.core.settings import PROJECT_ROOT

PROJECT = PROJECT_ROOT / "dbt"


def load_next_snapshot(settings: Any, step: int) -> int:
    """One more snapshot, 5 minutes after the last, as a lake file, loaded; returns the load
    sequence it got. Its assets are a replay day's (the next one, round the replay's end)."""
    from flows.adapters.duckdb_warehouse import DuckDBWarehouse
    from flows.adapters.lake import Lake
    from flows.core.loading import load_pending
    from flows.replay.dataset import shared_dataset
    from flows.replay.server import assets_body

    dataset = shared_dataset()
    day = dataset.days[TICK_START_DAY + step % (len(dataset.days) - TICK_START_DAY)]
    at = dataset.days[TICK_START_DAY] + step * 300_000
    Lake(settings.lake_url).write_snapshot(
        "replay", at, assets_body(at, dataset.assets(day, limit=COINS))
    )
    with DuckDBWarehouse(settings.duckdb_path) as warehouse:
        load_pending(Lake(settings.lake_url), warehouse)
        return int(warehouse.con.execute("select max(load_seq) from raw.lake_files").fetchone()[0])


def runners(settings: Any) -> dict[str, Callable[[dict[str, str]], int]]:
    """Each runner: build with the given run environment, return the nodes it ran."""
    from dbt.cli.main import dbtRunner
    from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings
    from prefect_dbt.core._orchestrator import ExecutionMode, PrefectDbtOrchestrator

    from flows.adapters.dbt_runner import WarmDbt, dbt_environment
    from flows.adapters.targets import resolve_target

    target = resolve_target(settings)
    ours = WarmDbt(PROJECT, release=target.release_dbt)
    manifest, _, _ = ours.manifest(target.dbt_target, target.dbt_env)
    target_path = Path(tempfile.mkdtemp(prefix="prefect-dbt-target-"))
    with dbt_environment({"DO_NOT_TRACK": "1", **target.dbt_env}):  # manifest.json for it
        parsed = dbtRunner().invoke(
            ["parse", "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT),
             "--target-path", str(target_path), "--target", target.dbt_target, "--quiet"]
        )  # fmt: skip
    assert parsed.success, parsed.exception
    from dbt_common.events.base_types import EventLevel

    dbt_settings = PrefectDbtSettings(  # its level from ours would be "WARNING": not dbt's
        project_dir=PROJECT,
        profiles_dir=PROJECT,
        target_path=target_path,
        log_level=EventLevel.WARN,
    )
    exclude = ["--exclude-resource-type", "unit_test"]

    def run_ours(run_env: dict[str, str]) -> int:
        build = ours.build(target.dbt_target, target.dbt_env, run_env=run_env)
        assert build.success, build.failed or build.error
        return len(build.nodes)

    def run_prefect_runner(run_env: dict[str, str]) -> int:
        runner = PrefectDbtRunner(manifest=manifest, settings=dbt_settings, disable_assets=True)
        with dbt_environment({"DO_NOT_TRACK": "1", **target.dbt_env, **run_env}):
            try:
                result = runner.invoke(["build", *exclude, "--target", target.dbt_target])
            finally:
                target.release_dbt()
        assert result.success, result.exception
        return len(result.result)

    def run_orchestrator(run_env: dict[str, str]) -> int:
        orchestrator = PrefectDbtOrchestrator(
            settings=dbt_settings,
            manifest_path=target_path / "manifest.json",
            execution_mode=ExecutionMode.PER_WAVE,
            create_summary_artifact=False,
        )
        with dbt_environment({"DO_NOT_TRACK": "1", **target.dbt_env, **run_env}):
            try:
                results = orchestrator.run_build(
                    exclude="resource_type:unit_test", target=target.dbt_target
                )
            finally:
                target.release_dbt()
        return len(results)

    return {
        "ours (warm manifest, one task)": run_ours,
        "prefect-dbt PrefectDbtRunner (manifest given)": run_prefect_runner,
        "prefect-dbt PrefectDbtOrchestrator (PER_WAVE)": run_orchestrator,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="builds per runner")
    parser.add_argument("--days", type=int, default=1, help="history before the first build")
    args = parser.parse_args()
    from prefect import flow

    from flows.core.settings import Settings

    base = Path(tempfile.mkdtemp(prefix="cryptolytics-dbt-runners-"))
    with prefect_server(base) as api_url:
        root = base / "workspace"
        root.mkdir()
        env = workspace_env(root, api_url)
        prepare(root, env, args.days)
        os.environ.update(env)
        settings = Settings()
        candidates = runners(settings)

        @flow(name="bench-dbt-runner")
        def timed(name: str, run_env: dict[str, str]) -> tuple[float, int]:
            started = time.perf_counter()
            nodes = candidates[name](run_env)
            return time.perf_counter() - started, nodes

        seconds: dict[str, list[float]] = {name: [] for name in candidates}
        nodes: dict[str, int] = {}
        step = 0
        for _ in range(args.rounds + 1):  # the first round of each warms it up: not counted
            for name in candidates:
                seq = load_next_snapshot(settings, step)
                step += 1
                took, nodes[name] = timed(name, {"CRYPTOLYTICS_TESTS_AFTER_SEQ": str(seq - 1)})
                seconds[name].append(took)
    results = {
        "days": args.days,
        "rounds": args.rounds,
        "runners": {
            name: {
                "p50_s": round(statistics.median(times[1:]), 3),
                "max_s": round(max(times[1:]), 3),
                "nodes": nodes[name],
            }
            for name, times in seconds.items()
        },
    }
    ours = results["runners"]["ours (warm manifest, one task)"]["p50_s"]
    print(f"\n== dbt build of one tick, {args.days} day(s) of history, {args.rounds} rounds ==")
    for name, figures in results["runners"].items():
        print(
            f"  {name:<50}p50 {figures['p50_s']:>6.2f} s  max {figures['max_s']:>6.2f} s"
            f"  {figures['p50_s'] / ours:>5.1f}x ours  ({figures['nodes']} nodes)"
        )
    out = BENCH_DIR / "results" / "dbt_runners.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(PROJECT_ROOT)}")


if __name__ == "__main__":
    main()
