"""prefect.yaml, as users run it: `prefect deploy --all` against a real Prefect server with
the process pool, then a process worker runs the scheduled `pipeline` deployment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL

from flows.settings import PROJECT_ROOT, Settings

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_server")]


def prefect_cli(*args: str, timeout: float = 300) -> str:
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PWD": str(PROJECT_ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_deploy_all_then_a_process_worker_runs_the_pipeline(
    settings: Settings, tmp_path: Path
) -> None:
    prefect_cli("work-pool", "create", "cryptolytics", "--type", "process", "--overwrite")
    prefect_cli("deploy", "--all")
    prefect_cli("deploy", "--all")  # again: updated in place, not doubled

    with get_client(sync_client=True) as client:
        deployments = {
            f"{client.read_flow(d.flow_id).name}/{d.name}": d for d in client.read_deployments()
        }
    ours = {name: d for name, d in deployments.items() if d.work_pool_name == "cryptolytics"}
    assert set(ours) == {
        "pipeline/pipeline",
        "backfill/backfill",
        "transform/full-refresh",
        "audit/audit",
    }
    tick = ours["pipeline/pipeline"]
    assert [s.schedule.interval.total_seconds() for s in tick.schedules] == [300]
    assert tick.global_concurrency_limit and tick.global_concurrency_limit.limit == 1
    assert tick.concurrency_options.collision_strategy == "CANCEL_NEW"
    assert tick.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(PROJECT_ROOT)}}
    ]
    assert ours["transform/full-refresh"].parameters == {"full_refresh": True}
    assert not ours["transform/full-refresh"].schedules  # manual only
    assert ours["backfill/backfill"].parameters == {"top": 100, "interval": "d1"}
    audit = ours["audit/audit"]  # daily, never next to itself
    assert [s.schedule.cron for s in audit.schedules] == ["17 3 * * *"]
    assert audit.global_concurrency_limit and audit.global_concurrency_limit.limit == 1

    run = run_deployment("pipeline/pipeline", timeout=0)
    prefect_cli("worker", "start", "--pool", "cryptolytics", "--run-once", timeout=600)
    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + 300
        while not (state := client.read_flow_run(run.id).state).is_final():
            assert time.monotonic() < deadline, state
            time.sleep(1)
    assert state.is_completed(), state.message
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        assert con.execute(
            "select count(distinct snapshot_at) from prod.facts_coins"
        ).fetchall() == [(1,)]
