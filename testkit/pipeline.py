"""Pipeline steps without the Prefect engine, shared by tests/ and bench/: a built warehouse,
fast. They call the same functions the flows call (lake, loader, dbt project, publish); the
flows themselves are tested in tests/test_pipeline_flow.py and tests/test_stack.py."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import duckdb
from dbt.cli.main import dbtRunner

from flows.adapters.dbt_runner import dbt_environment, node_result
from flows.adapters.duckdb_warehouse import DuckDBWarehouse
from flows.adapters.lake import Lake
from flows.adapters.serving import PublishResult, current_copy
from flows.adapters.targets import resolve_target
from flows.core.loading import DbtNodeResult, load_pending
from flows.core.settings import PROJECT_ROOT, Settings
from flows.core.snapshot import parse_snapshot
from flows.replay.dataset import ReplayDataset
from flows.replay.server import assets_body


def run_dbt(
    settings: Settings,
    *args: str,
    project_dir: Path | None = None,
    env: dict[str, str] | None = None,
) -> list[DbtNodeResult]:
    """Plain dbt on the settings' target (no Prefect); raises with the failing nodes. `env`:
    what the pipeline passes a build besides the target (`BuildScope.dbt_env`)."""
    target = resolve_target(settings)
    project = str(project_dir or PROJECT_ROOT / "dbt")
    with dbt_environment({"DO_NOT_TRACK": "1", **target.dbt_env, **(env or {})}):
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


def tick(settings: Settings, snapshots: list[tuple[str, int, bytes]]) -> PublishResult | None:
    """Land (source, timestamp, body) snapshots in the lake, load, build (every node, with
    the pipeline's scope: its tests' rows and recent span) and publish (what it returns)."""
    lake = Lake(settings.lake_url)
    for source, timestamp, body in snapshots:
        lake.write_snapshot(source, timestamp, body)
    with DuckDBWarehouse(settings.duckdb_path) as warehouse:
        load_pending(lake, warehouse)
        scope = warehouse.build_scope()
    results = run_dbt(settings, "build", env=scope.dbt_env())
    with DuckDBWarehouse(settings.duckdb_path) as warehouse:
        warehouse.record_dbt_results(results, scope)
    return resolve_target(settings).publish(full=False, ops_only=False)


def lake_snapshots(lake: Lake) -> dict[str, tuple[int, str, float]]:
    """Per lake file: rows, a digest of the coin ids, the sum of prices."""
    result = {}
    for path in lake.list_snapshots():
        assets = parse_snapshot(lake.read(path)).assets
        ids = ",".join(sorted(asset.id for asset in assets))
        result[path] = (
            len(assets),
            hashlib.md5(ids.encode()).hexdigest(),
            sum(asset.price_usd for asset in assets),
        )
    return result


def warehouse_snapshots(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, str, float]]:
    rows = con.execute(
        "select lake_path, count(*), md5(string_agg(id, ',' order by id)), sum(price_usd) "
        "from raw.coincap_assets group by lake_path"
    ).fetchall()
    return {path: (count, digest, total) for path, count, digest, total in rows}


def assert_warehouse_equals_lake(settings: Settings) -> int:
    lake = lake_snapshots(Lake(settings.lake_url))
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        loaded = warehouse_snapshots(con)
        assert loaded.keys() == lake.keys(), "a lake snapshot is missing or extra in the warehouse"
        for path, (count, digest, total) in lake.items():
            assert loaded[path][:2] == (count, digest), path
            assert math.isclose(loaded[path][2], total, rel_tol=1e-12), path
        manifest = dict(con.execute("select lake_path, row_count from raw.lake_files").fetchall())
        assert manifest == {path: figures[0] for path, figures in lake.items()}
        raw_keys = con.execute(
            "select count(*), count(distinct (id, snapshot_at)) from raw.coincap_assets"
        ).fetchall()[0]
        fact_keys = con.execute(
            "select count(*), count(distinct (coin_id, snapshot_at)) from prod.facts_coins"
        ).fetchall()[0]
        assert raw_keys[0] == raw_keys[1] == fact_keys[0] == fact_keys[1]
        per_snapshot = "select snapshot_at, count(*), sum(price_usd) from {} group by 1 order by 1"
        facts = con.execute(per_snapshot.format("prod.facts_coins")).fetchall()
        assert facts == con.execute(per_snapshot.format("raw.coincap_assets")).fetchall()
        overview = con.execute(
            "select snapshot_at, asset_count from prod.mart_market_overview order by 1"
        ).fetchall()
        assert overview == [(at, count) for at, count, _ in facts]
        ranking = con.execute("select count(*), max(snapshot_at) from prod.mart_latest_ranking")
        latest_ranking = ranking.fetchall()[0]
        assert latest_ranking == (facts[-1][1], facts[-1][0])
    serving = current_copy(settings.serving_dir)
    assert serving is not None
    with duckdb.connect(str(serving), read_only=True) as con:
        served = con.execute(
            "select count(*), max(snapshot_at) from prod.mart_latest_ranking"
        ).fetchall()[0]
        assert served == latest_ranking, "the app would show an older or partial ranking"
        served_overview = con.execute(
            "select snapshot_at, asset_count from prod.mart_market_overview order by 1"
        ).fetchall()
        assert served_overview == overview
    return len(lake)
