"""`make up`: the production path on local defaults, in one terminal.

It starts a Prefect server (SQLite, UI on http://127.0.0.1:4200), deploys `prefect.yaml`
to it (`prefect deploy --all`, the same definitions production uses), starts the same
worker a production host runs (`prefect worker start --pool cryptolytics`, our warm worker
type) and the analyst app (http://127.0.0.1:8501), then asks for the first tick at once.
With the replay and no history yet, it also asks for the demo backfill of 2021.

The terminal gets one line per finished flow run; everything else goes to `logs/`.
Ctrl-C, SIGTERM or a closed terminal (SIGHUP) pauses the schedules and stops all of it.

    python -m flows.runtime.stack [--port 4200] [--app-port 8501] [--logs logs]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from flows.core.settings import PROJECT_ROOT, Settings, get_settings

PREFECT_PORT = 4200
APP_PORT = 8501
POOL = "cryptolytics"
DEMO_BACKFILL_COINS = 2000
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stop(BaseException):
    """A stop signal arrived: wind everything down. A BaseException, like KeyboardInterrupt,
    so no `except Exception` on the way (a client retrying a request) swallows it."""


def streamlit_command(port: int) -> list[str]:
    """How the analyst app is started here and in the browser tests (from the project
    folder: its settings are .streamlit/config.toml's; only the port is chosen here)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "streamlit_app/app.py",
        "--server.port",
        str(port),
    ]


def port_taken(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"The Prefect server exited (code {process.returncode}); see {log}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"The Prefect server did not answer within {timeout:.0f}s; see {log}")


class Children:
    """The processes the stack started, each leading its own process group so a Ctrl-C in
    the terminal reaches only the stack, which then stops them in order."""

    def __init__(self, logs: Path, env: dict[str, str]) -> None:
        self.logs, self.env = logs, env
        self.started: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        child = subprocess.Popen(
            command, env=self.env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.started.append((name, child, log))
        return child

    def run(self, name: str, command: list[str], timeout: float = 600) -> None:
        """A one-off command (deploying); a failure is one line that names its log."""
        with (self.logs / f"{name}.log").open("ab") as log:
            done = subprocess.run(
                command, env=self.env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, timeout=timeout, check=False,
            )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"`{' '.join(command[2:])}` failed; see {log.name}")

    def dead(self) -> str | None:
        for name, child, log in self.started:
            if child.poll() is not None:
                return f"The {name} exited (code {child.returncode}); see {log.name}"
        return None

    def stop(self, grace_seconds: float = 30) -> None:
        """Newest first (app, worker, server): SIGTERM each group, then SIGKILL what is left."""
        for _name, child, _log in reversed(self.started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=grace_seconds)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        for _name, _child, log in self.started:
            log.close()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    def stop(signum: int, _frame: object) -> None:
        for each in STOP_SIGNALS:  # one stop is enough; later signals wait for it
            signal.signal(each, signal.SIG_IGN)
        raise Stop(signal.Signals(signum).name)

    previous = {each: signal.signal(each, stop) for each in STOP_SIGNALS}
    try:
        yield
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)


def our_deployments(client: Any) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, WorkPoolFilter, WorkPoolFilterName

    return client.read_deployments(
        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[POOL])),
        deployment_filter=DeploymentFilter(),
    )


def set_schedules(active: bool) -> None:
    """Resume on start; pause on stop, so no runs pile up while no worker serves them."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for deployment in our_deployments(client):
            if active:
                client.resume_deployment(deployment.id)
            else:
                client.pause_deployment(deployment.id)


def finished_runs(since: datetime, seen: set[Any]) -> list[str]:
    """One line per flow run of ours that ended since the last call."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterEndTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
        WorkPoolFilter,
        WorkPoolFilterName,
    )
    from prefect.client.schemas.objects import StateType

    final = [StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=final)),
                end_time=FlowRunFilterEndTime(after_=since),
            ),
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[POOL])),
        )
        names = {d.id: d.name for d in our_deployments(client)}
    lines = []
    for run in sorted(runs, key=lambda r: r.end_time or since):
        if run.id in seen or run.end_time is None or run.state is None:
            continue
        seen.add(run.id)
        took = run.total_run_time.total_seconds()
        line = f"{run.end_time.astimezone():%H:%M:%S}  {names.get(run.deployment_id, '?'):<12}"
        line += f" {str(run.state.name).lower()} in {took:.1f}s"
        if not run.state.is_completed() and run.state.message:
            line += f": {run.state.message.splitlines()[0][:160]}"
        lines.append(line)
    return lines


def start_demo_work(settings: Settings) -> None:
    """The first tick now; with the replay and no history yet, a year of daily history
    too. 'Replay' is decided as the flows decide it (`resolve_source`)."""
    from prefect.deployments import run_deployment

    from flows.adapters.source import resolve_source
    from flows.adapters.targets import resolve_target

    source = resolve_source(settings)
    if not source.live:
        print(
            "No CoinCap API key (CRYPTOLYTICS_COINCAP_API_KEY, or its Secret block on the cloud "
            "target): the pipeline REPLAYS bundled real 2021 market data, one day per tick. "
            "It is not live data.",
            flush=True,
        )
    run_deployment("pipeline/pipeline", timeout=0)
    if not source.live and not resolve_target(settings).lake.list_history():
        run_deployment(
            "backfill/backfill",
            parameters={"interval": "d1", "top": DEMO_BACKFILL_COINS},
            timeout=0,
        )
        print(f"Replay demo: backfilling 2021 for the top {DEMO_BACKFILL_COINS} coins.")


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the local stack until Ctrl-C.")
    parser.add_argument("--port", type=int, default=PREFECT_PORT, help="Prefect server and UI port")
    parser.add_argument("--app-port", type=int, default=APP_PORT, help="Streamlit app port")
    parser.add_argument("--logs", type=Path, default=PROJECT_ROOT / "logs")
    parser.add_argument("--startup-timeout", type=float, default=180, help="server start, s")
    args = parser.parse_args()
    for port, what in ((args.port, "Prefect server"), (args.app_port, "analyst app")):
        if port_taken(port):
            raise SystemExit(
                f"Port {port} (the {what}) is already in use: is another `make up` running?"
            )
    settings = get_settings()
    api_url = f"http://127.0.0.1:{args.port}/api"
    args.logs.mkdir(parents=True, exist_ok=True)
    # PWD: prefect.yaml's pull step records the folder deployed from (`make -C` elsewhere too)
    children = Children(
        args.logs, {**os.environ, "PREFECT_API_URL": api_url, "PWD": str(PROJECT_ROOT)}
    )
    prefect = [sys.executable, "-m", "prefect"]
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server_up, failed = False, False
    with stop_on_signals(), temporary_settings(updates={PREFECT_API_URL: api_url}):
        try:
            print("Starting the Prefect server, deploying prefect.yaml ...", flush=True)
            server = children.start(
                "prefect-server",
                [*prefect, "server", "start", "--host", "127.0.0.1", "--port", str(args.port)],
            )
            wait_healthy(api_url, server, args.logs / "prefect-server.log", args.startup_timeout)
            server_up = True
            children.run("deploy", [*prefect, "work-pool", "create", POOL, "--type", POOL,
                                    "--overwrite"])  # fmt: skip
            children.run("deploy", [*prefect, "--no-prompt", "deploy", "--all"])
            set_schedules(active=True)
            children.start("worker", [*prefect, "worker", "start", "--pool", POOL])
            children.start("streamlit", streamlit_command(args.app_port))
            started = datetime.now(tz=UTC)
            start_demo_work(settings)
            print(
                f"Prefect UI: http://127.0.0.1:{args.port}   Analyst app: "
                f"http://127.0.0.1:{args.app_port}   (Ctrl-C stops everything; logs in "
                f"{args.logs})",
                flush=True,
            )
            seen: set[Any] = set()
            while (problem := children.dead()) is None:
                with contextlib.suppress(Exception):  # a busy server: try again next time
                    for line in finished_runs(started, seen):
                        print(line, flush=True)
                time.sleep(2)
            print(problem, file=sys.stderr)
            failed = True
        except Stop as stop:
            print(f"\nStopping ({stop}) ...", flush=True)
        except SystemExit as failure:
            print(failure, file=sys.stderr, flush=True)
            failed = True
        finally:
            for each in STOP_SIGNALS:  # stopping is not interrupted by a second Ctrl-C
                signal.signal(each, signal.SIG_IGN)
            if server_up:
                with contextlib.suppress(Exception):
                    set_schedules(active=False)
            children.stop()
    print("Stopped.", flush=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
