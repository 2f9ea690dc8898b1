"""Pipeline steps without the Prefect engine, for tests that need a built warehouse fast.

These call the same functions the flows call (lake, loader, dbt project, publish); the flows
themselves are tested in test_pipeline_flow.py and test_stack.py."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from dbt.cli.main import dbtRunner

from flows.dbt_build import dbt_environment, node_result
from flows.lake import Lake
from flows.replay.dataset import ReplayDataset
from flows.replay.server import assets_body
from flows.serving import current_copy
from flows.settings import PROJECT_ROOT, Settings
from flows.snapshot import parse_snapshot
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
            assert loaded[path][2] == pytest.approx(total, rel=1e-12), path
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


def files_containing(needle: bytes, roots: list[Path]) -> list[str]:
    """Every file under `roots` holding `needle`, in its bytes or, for gzip files, in what
    they inflate to (the lake and quarantine are gzip)."""
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if not path.is_file():
                continue
            payload = path.read_bytes()
            if payload[:2] == b"\x1f\x8b":
                with contextlib.suppress(OSError, EOFError):
                    payload += gzip.decompress(payload)
            if needle in payload:
                found.append(str(path))
    return sorted(set(found))


# Every page's queries in a process of their own, as `streamlit run` starts the app: no
# Prefect server to reach (the address answers nothing), no Prefect imported at all.
APP_ALONE = """
import sys
from bench.app_queries import page_queries
from streamlit_app import data
assert data.has_data()
for run in page_queries().values():
    run()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("prefect", "prefect_gcp"))
print("prefect modules:", loaded)
"""


def assert_app_stands_alone() -> None:
    """The settings come from this process's environment (the target's, a test's)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        "PREFECT_API_URL": "http://127.0.0.1:9/api",  # the discard port: nothing listens
        "GOOGLE_APPLICATION_CREDENTIALS": "",
    }
    done = subprocess.run(
        [sys.executable, "-c", APP_ALONE], env=env, cwd=PROJECT_ROOT,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "prefect modules: []" in done.stdout, done.stdout
