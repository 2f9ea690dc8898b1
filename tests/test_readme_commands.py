"""Every `python -m flows.<name>` and `prefect ...` command the README shows, run as written
from the project folder after `make install`: no PREFECT_* variable set (the project's
`[tool.prefect]` settings apply), a temporary Prefect server per flow command, data in a
workspace of this test. Each must end with exit code 0, a one-line outcome and no traceback."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState
from prefect.client.schemas.filters import FlowRunFilterStateType as StateTypes
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL
from prefect.states import Cancelled
from pytest_httpserver import HTTPServer

from flows.core.settings import PROJECT_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.prefect]

README = (PROJECT_ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```bash\n(.*?)```", README, flags=re.DOTALL)
LINES = [line for block in BLOCKS for line in block.splitlines()]
# the command without its trailing comment; the comment says "live only" for live-only ones
COMMENT = re.compile(r"\s+#\s*(.*)$")
FLOW_COMMANDS = [line for line in LINES if line.startswith(".venv/bin/python -m flows.")]
PREFECT_COMMANDS = [line for line in LINES if line.startswith(".venv/bin/prefect ")]
HISTORY_H1 = PROJECT_ROOT / "tests/fixtures/coincap/v2_bitcoin_history_h1_2023-03-03.json"


def split(line: str) -> tuple[list[str], str]:
    comment = COMMENT.search(line)
    command = line[: comment.start()] if comment else line
    return shlex.split(command), comment[1] if comment else ""


def clean_env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CRYPTOLYTICS_"))}
    return {
        **env,
        "CRYPTOLYTICS_LAKE_URL": str(root / "lake"),
        "CRYPTOLYTICS_DUCKDB_PATH": str(root / "warehouse.duckdb"),
        "CRYPTOLYTICS_SERVING_DIR": str(root / "serving"),
        "CRYPTOLYTICS_ASSET_LIMIT": "300",
        **extra,
    }


def run(argv: list[str], env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run(
        argv, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    shown = " ".join(argv)
    assert done.returncode == 0, (shown, done.stdout[-2000:], done.stderr[-3000:])
    assert "Traceback" not in done.stderr, (shown, done.stderr[-3000:])
    outcome = done.stdout.strip().splitlines()
    assert outcome and outcome[-1].strip(), (shown, "no outcome line")
    return outcome[-1]


def test_the_readme_shows_the_commands_this_test_runs() -> None:
    names = {split(line)[0][2] for line in FLOW_COMMANDS}
    assert {"flows.pipeline", "flows.extract", "flows.load", "flows.transform", "flows.audit",
            "flows.backfill", "flows.replay.server"} <= names  # fmt: skip
    subcommands = {tuple(split(line)[0][1:3]) for line in PREFECT_COMMANDS}
    assert ("work-pool", "create") in subcommands and ("worker", "start") in subcommands
    assert ("deployment", "run") in subcommands


def test_every_flow_command_in_the_readme_runs_as_written(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    replay_env = clean_env(tmp_path / "replay")
    httpserver.expect_request("/v3/assets/bitcoin/history").respond_with_data(
        HISTORY_H1.read_bytes(), content_type="application/json"
    )
    live_env = clean_env(
        tmp_path / "live",
        CRYPTOLYTICS_COINCAP_API_KEY="test-key",
        CRYPTOLYTICS_COINCAP_BASE_URL=httpserver.url_for("/v3"),
    )
    outcomes = {}
    for line in FLOW_COMMANDS:
        argv, comment = split(line)
        if argv[2] == "flows.replay.server":
            outcomes[line] = serve_once(argv, replay_env)
            continue
        outcomes[line] = run(argv, live_env if "live only" in comment else replay_env)
    said = "\n".join(outcomes.values())
    for expected in ("Snapshot ", "(replay)", "Load: ", "dbt: ", "Verify: ", "Audit: all",
                     "Backfill: ", "served"):  # fmt: skip
        assert expected in said, (expected, outcomes)
    assert "failed" not in said.replace(" 0 failed", ""), outcomes


def serve_once(argv: list[str], env: dict[str, str]) -> str:
    """A long-running command: it must answer, then stop cleanly on SIGINT."""
    port = argv[argv.index("--port") + 1]
    server = subprocess.Popen(
        argv, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/v3/assets?limit=1", timeout=2)
                break
            except httpx.HTTPError:
                assert server.poll() is None and time.monotonic() < deadline, "not serving"
                time.sleep(0.3)
        assert answer.status_code == 200 and answer.json()["data"]
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=30)
    assert "Traceback" not in stderr, stderr[-2000:]
    return "served"


@pytest.mark.usefixtures("prefect_server")
def test_every_prefect_command_in_the_readme_runs_as_written(tmp_path: Path) -> None:
    env = {
        **clean_env(tmp_path),
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PWD": str(PROJECT_ROOT),  # prefect.yaml's pull step: the folder deployed from
    }
    worker_lines = []
    for line in PREFECT_COMMANDS:
        argv, _ = split(line)
        if argv[1:3] == ["worker", "start"]:
            worker_lines.append(argv)
            continue
        run(argv, env, timeout=300)
    cancel_pending_runs()  # what `deployment run` created: not for this test to run
    for argv in worker_lines:  # a long-running command: it starts, then stops on SIGTERM
        worker = subprocess.Popen(
            argv, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=pump, args=(worker, lines), daemon=True).start()
        seen = []
        deadline = time.monotonic() + 180
        while not any("started" in line for line in seen) and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=1))
            assert worker.poll() is None, ("the worker exited", seen)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=90)
        time.sleep(0.5)  # the reader thread drains what is left
        while not lines.empty():
            seen.append(lines.get())
        said = "".join(seen)
        assert "started" in said, said[-3000:]
        assert "Traceback" not in said, said[-3000:]


def pump(process: subprocess.Popen[str], into: queue.Queue[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        into.put(line)


def cancel_pending_runs() -> None:
    waiting = [StateType.SCHEDULED, StateType.PENDING]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=StateTypes(any_=waiting)))
        )
        for flow_run in runs:
            client.set_flow_run_state(flow_run.id, Cancelled(), force=True)
