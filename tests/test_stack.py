"""`make up`'s process tree for real: Prefect server, prefect.yaml deployed, the warm worker
running the first tick at once, one line per run in the terminal, and a stop signal
stopping everything it started with the schedules paused."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from flows.core.settings import PROJECT_ROOT, Settings

pytestmark = [pytest.mark.e2e, pytest.mark.prefect]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_started_for(root: Path) -> list[str]:
    """Processes whose environment points at this test's data: anything the stack left."""
    marker = str(root).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker in (proc / "environ").read_bytes():
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120])
        except OSError:
            continue  # gone, or not ours to read
    return found


def kill_leftovers(root: Path, stack: subprocess.Popen[str]) -> None:
    """A failed stop must not leave a server and a worker running for the rest of the suite."""
    stack.kill()
    marker = str(root).encode()
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            if proc.name.isdigit() and marker in (proc / "environ").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)


def completed_pipeline_runs(api: str) -> list[dict]:
    response = httpx.post(
        f"{api}/flow_runs/filter",
        json={
            "flows": {"name": {"any_": ["pipeline"]}},
            "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
        },
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def start_stack(env: dict[str, str], port: int, app_port: int, logs: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.runtime.stack", "--port", str(port),
         "--app-port", str(app_port), "--logs", str(logs)],
        env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def wait_for_completed_runs(api: str, stack: subprocess.Popen[str], count: int) -> None:
    deadline = time.monotonic() + 240
    runs: list[dict] = []
    while time.monotonic() < deadline and len(runs) < count:
        with contextlib.suppress(httpx.HTTPError):
            runs = completed_pipeline_runs(api)
        assert stack.poll() is None, "the stack exited on its own"
        time.sleep(2)
    assert len(runs) >= count, f"{count} pipeline run(s) not completed within 4 minutes"


def stop_stack(stack: subprocess.Popen[str], stop_signal: signal.Signals, root: Path) -> str:
    stack.send_signal(stop_signal)
    try:
        output, _ = stack.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        kill_leftovers(root, stack)
        raise
    return output


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_stack_runs_prefect_yaml_on_the_worker_and_stops_cleanly(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    port, app_port = free_port(), free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "CRYPTOLYTICS_LAKE_URL": str(tmp_path / "lake"),
        "CRYPTOLYTICS_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
        "CRYPTOLYTICS_SERVING_DIR": str(tmp_path / "serving"),
        "CRYPTOLYTICS_SOURCE": "coincap",
        "CRYPTOLYTICS_COINCAP_API_KEY": "",  # no key: the stack must replay and say so
    }
    env.pop("PREFECT_API_URL", None)
    stack = start_stack(env, port, app_port, tmp_path / "logs")
    try:
        wait_for_completed_runs(api, stack, 1)
        app = httpx.get(f"http://127.0.0.1:{app_port}/_stcore/health", timeout=5)
        assert app.status_code == 200  # the analyst app runs next to the pipeline
        # the first tick ran at once: replay day one is in the warehouse
        time.sleep(1)
    finally:
        output = stop_stack(stack, stop_signal, tmp_path)
    assert stack.returncode == 0, output
    assert "Traceback" not in output, output
    assert "REPLAYS bundled real 2021 market data" in output  # no key: it says so
    # one line per finished run in the terminal: the first tick, by the warm worker
    assert re.search(r"\d\d:\d\d:\d\d  pipeline\s+completed in \d+\.\d+s", output), output
    assert "Warm worker ready" in (tmp_path / "logs" / "worker.log").read_text()
    # each part says when it answers, with its URL
    for ready in (f"Prefect UI ready: http://127.0.0.1:{port}",
                  f"Analyst app ready: http://127.0.0.1:{app_port}",
                  "Worker ready: pool cryptolytics", "Deployed prefect.yaml"):  # fmt: skip
        assert ready in output, (ready, output)
    with sqlite3.connect(tmp_path / "prefect" / "prefect.db") as db:
        paused = dict(db.execute("select name, paused from deployment").fetchall())
    assert paused and all(paused.values()), paused  # no runs pile up while nothing serves

    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        days = con.execute(
            "select count(distinct snapshot_at), min(source) from prod.facts_coins"
        ).fetchall()
    # the first replay tick on an empty lake takes the demo's seed: changes and sparklines
    # from the first page (the default settings.replay_seed_days)
    assert (
        days[0][1] == "replay" and days[0][0] >= Settings.model_fields["replay_seed_days"].default
    )
    assert processes_started_for(tmp_path) == []  # no flow run outlives Ctrl-C either
    for stopped in (f"{api}/health", f"http://127.0.0.1:{app_port}/_stcore/health"):
        with pytest.raises(httpx.ConnectError):
            httpx.get(stopped, timeout=2)  # Ctrl-C stopped the server and the app too
    if stop_signal != signal.SIGINT:
        return
    # a restart: nothing changed, so no second `prefect deploy`; the next tick runs at once
    # and takes one replay day (the seed is for an empty lake only)
    port, app_port = free_port(), free_port()  # the old ones may linger in TIME_WAIT
    stack = start_stack(env, port, app_port, tmp_path / "logs")
    try:
        wait_for_completed_runs(f"http://127.0.0.1:{port}/api", stack, 2)
    finally:
        again = stop_stack(stack, signal.SIGINT, tmp_path)
    assert stack.returncode == 0 and "Traceback" not in again, again
    assert "prefect.yaml is deployed (unchanged)" in again, again
    assert "Worker ready: pool cryptolytics" in again, again  # this start's line, not the last
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        after = con.execute("select count(distinct snapshot_at) from prod.facts_coins").fetchall()
    assert after[0][0] == days[0][0] + 1


def test_a_port_in_use_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "flows.runtime.stack", "--port", str(port),
             "--logs", str(tmp_path / "logs")],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert (
        lines[-1]
        == f"Port {port} (the Prefect server) is already in use: is another `make up` running?"
    )
    assert not (tmp_path / "logs").exists()  # nothing started
