"""prefect.yaml, as users run it: `prefect deploy --all` against a real Prefect server,
then `prefect worker start` with our warm worker type runs the deployments: a tick warm,
a run cancelled from the API while it runs, a run whose process is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import UUID

import duckdb
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import FlowRun, State
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL
from prefect.states import Cancelling

from flows.core.settings import PROJECT_ROOT, Settings

pytestmark = [pytest.mark.e2e, pytest.mark.prefect, pytest.mark.usefixtures("prefect_server")]


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


def test_deploy_all_then_the_warm_worker_runs_the_pipeline(
    settings: Settings, tmp_path: Path
) -> None:
    prefect_cli("work-pool", "create", "cryptolytics", "--type", "cryptolytics", "--overwrite")
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
    # warm: the run began with the dbt project the warm server had parsed
    wait_for(lambda: "dbt: " in run_logs(run.id), 60)  # logs reach the API in batches
    logs = run_logs(run.id)
    assert "dbt: warm manifest reused" in logs, logs


def run_logs(flow_run_id: UUID) -> str:
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    return "\n".join(log.message for log in logs)


def wait_for(predicate: Callable[[], object], seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def final_state(flow_run_id: UUID, seconds: float = 180) -> State:
    with get_client(sync_client=True) as client:
        wait_for(lambda: client.read_flow_run(flow_run_id).state.is_final(), seconds)
        state = client.read_flow_run(flow_run_id).state
    assert state is not None
    return state


def parent_command(pid: int) -> str:
    """The command line of a process's parent (the warm server, for a warm run)."""
    ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
    return Path(f"/proc/{ppid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def launchers() -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if (
                proc.name.isdigit()
                and b"flows.runtime.warm_launch" in (proc / "cmdline").read_bytes()
            ):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def warm_worker(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """`prefect worker start` on a pool of our type, with the probe flow deployed to it."""
    prefect_cli("work-pool", "create", "cryptolytics", "--type", "cryptolytics", "--overwrite")
    prefect_cli("deploy", "tests/warm_probe.py:sleepy", "--name", "probe", "--pool", "cryptolytics")
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "cryptolytics"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=(tmp_path / "worker.log").open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield worker
    finally:
        worker.terminate()
        worker.wait(60)


def start_warm_probe(tmp_path: Path) -> tuple[FlowRun, int]:
    """A probe run, running: its run and its process id, proved warm (its parent is the
    warm server, not a cold `python -m prefect.engine`)."""
    pid_file = tmp_path / "pid"
    run = run_deployment("warm-probe/probe", parameters={"pid_file": str(pid_file)}, timeout=0)
    wait_for(pid_file.exists)
    pid = int(pid_file.read_text())
    assert "flows.runtime.warm_server" in parent_command(pid)
    return run, pid


def test_a_run_cancelled_while_it_runs_ends_cancelled_and_its_process_with_it(
    warm_worker: subprocess.Popen[str], tmp_path: Path
) -> None:
    run, pid = start_warm_probe(tmp_path)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Cancelling(), force=True)
    state = final_state(run.id)
    assert state.is_cancelled(), state
    wait_for(lambda: not alive(pid), 60)


def test_a_run_whose_process_is_killed_is_reported_crashed(
    warm_worker: subprocess.Popen[str], tmp_path: Path
) -> None:
    run, pid = start_warm_probe(tmp_path)
    os.kill(pid, signal.SIGKILL)  # the out-of-memory killer, say
    state = final_state(run.id)
    assert state.is_crashed(), state
    # and the worker goes on: the next run completes
    pid_file = tmp_path / "next"
    run = run_deployment(
        "warm-probe/probe", parameters={"pid_file": str(pid_file), "seconds": 0}, timeout=0
    )
    assert final_state(run.id).is_completed()
    # the run's last log line reached the API: a warm child sends what exit would send
    wait_for(lambda: "probe done" in run_logs(run.id), 30)


def test_a_killed_launcher_takes_its_run_with_it(
    warm_worker: subprocess.Popen[str], tmp_path: Path
) -> None:
    """Prefect SIGKILLs a run's process when it wants it gone now; the launcher stands in
    for the forked run, so the run must not outlive it."""
    run, pid = start_warm_probe(tmp_path)
    (launcher,) = launchers()
    os.kill(launcher, signal.SIGKILL)
    wait_for(lambda: not alive(pid), 10)  # at once, not after a grace period
    state = final_state(run.id)
    assert state.is_crashed(), state
