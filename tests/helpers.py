"""Pipeline steps without the Prefect engine, for tests that need a built warehouse fast.

These call the same functions the flows call (lake, loader, dbt project, publish); the flows
themselves are tested in test_pipeline_flow.py and test_stack.py."""

from __future__ import annotations

from dbt.cli.main import dbtRunner

from flows.dbt_build import dbt_environment, node_result
from flows.lake import Lake
from flows.replay.dataset import ReplayDataset
from flows.replay.server import assets_body
from flows.settings import PROJECT_ROOT, Settings
from flows.targets import resolve_target
from flows.warehouse import DbtNodeResult, DuckDBWarehouse, load_pending


def run_dbt(settings: Settings, *args: str) -> list[DbtNodeResult]:
    target = resolve_target(settings)
    project = str(PROJECT_ROOT / "dbt")
    with dbt_environment({"DO_NOT_TRACK": "1", **target.dbt_env}):
        try:
            result = dbtRunner().invoke(
                [*args, "--project-dir", project, "--profiles-dir", project, "--quiet"]
            )
        finally:
            target.release_dbt()
    assert result.success, result.exception or [
        (r.node.name, r.status, r.message)
        for r in result.result
        if r.status not in ("pass", "success")
    ]
    return [node_result(node) for node in result.result]


def replay_bodies(days: int, *, limit: int = 2000) -> list[tuple[int, bytes]]:
    """The first `days` replay days as the replay server would serve them."""
    dataset = ReplayDataset()
    try:
        return [
            (day, assets_body(day, dataset.assets(day, limit=limit))) for day in dataset.days[:days]
        ]
    finally:
        dataset.close()


def tick(settings: Settings, snapshots: list[tuple[str, int, bytes]]) -> None:
    """Land (source, timestamp, body) snapshots in the lake, load, build and publish."""
    lake = Lake(settings.lake_url)
    for source, timestamp, body in snapshots:
        lake.write_snapshot(source, timestamp, body)
    with DuckDBWarehouse(settings.duckdb_path) as warehouse:
        load_pending(lake, warehouse)
    results = run_dbt(settings, "build")
    with DuckDBWarehouse(settings.duckdb_path) as warehouse:
        warehouse.record_dbt_results(results)
    resolve_target(settings).publish(False, False)
