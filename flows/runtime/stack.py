"""`make up`: the production path on local defaults, in one terminal.

It starts the analyst app (http://127.0.0.1:8501), a Prefect server (SQLite, UI on
http://127.0.0.1:4200) and the same worker a production host runs (`prefect worker start
--pool cryptolytics`, our warm worker type) at once. When the server answers, `prefect.yaml`
is deployed to it (`prefect deploy --all`, the definitions production uses; skipped on a
restart when neither it nor an entrypoint changed), then it asks for the first tick. With
the replay and no history yet, that tick takes the replay's seed of days
(settings.replay_seed_days), and the demo backfill of 2021 is asked for when it is done.

The terminal gets one line as each part answers (with its URL and the seconds since start)
and one per finished flow run; everything else goes to `logs/`. Ctrl-C, SIGTERM or a
closed terminal (SIGHUP) pauses the schedules and stops all of it.

    python -m flows.runtime.stack [--port 4200] [--app-port 8501] [--logs logs]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from flows.core.settings import PROJECT_ROOT, Settings, get_settings

PREFECT_PORT = 4200
APP_PORT = 8501
POOL = "cryptolytics"
DEMO_BACKFILL_COINS = 2000


def deploy_stamp() -> Path:
    """The definitions last deployed to the server of this PREFECT_HOME (its database)."""
    from prefect.settings import PREFECT_HOME

    return Path(PREFECT_HOME.value()) / "cryptolytics-deployed.sha256"


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


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def wait_healthy(
    url: str,
    process: subprocess.Popen[bytes],
    log: Path,
    timeout: float,
    meanwhile: Callable[[], None] = lambda: None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"The Prefect server exited (code {process.returncode}); see {log}")
        if answers(f"{url}/health"):
            return
        meanwhile()
        time.sleep(0.25)
    raise SystemExit(f"The Prefect server did not answer within {timeout:.0f}s; see {log}")


class Milestones:
    """One terminal line as each part of the stack answers, with seconds since the start."""

    def __init__(self, app_url: str, worker_log: Path) -> None:
        self.started = time.monotonic()
        self.app_url, self.worker_log = app_url, worker_log
        self.pending = {"app", "worker"}
        # logs are appended to: only what this start writes counts
        self.worker_log_offset = worker_log.stat().st_size if worker_log.exists() else 0

    def say(self, what: str) -> None:
        print(f"{time.monotonic() - self.started:5.1f}s  {what}", flush=True)

    def check(self) -> None:
        """Cheap probes, called from the stack's loop until both have answered."""
        if "app" in self.pending and answers(f"{self.app_url}/_stcore/health"):
            self.pending.discard("app")
            self.say(f"Analyst app ready: {self.app_url}")
        if "worker" in self.pending and self.worker_log.exists():
            with self.worker_log.open("rb") as log:
                log.seek(self.worker_log_offset)
                if b"Warm worker ready" in log.read():
                    self.pending.discard("worker")
                    self.say(f"Worker ready: pool {POOL}, flows preloaded")


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

    def run(
        self,
        name: str,
        command: list[str],
        timeout: float = 600,
        meanwhile: Callable[[], None] = lambda: None,
    ) -> None:
        """A one-off command (deploying), with `meanwhile` called while it runs; a failure
        is one line that names its log."""
        with (self.logs / f"{name}.log").open("ab") as log:
            child = subprocess.Popen(
                command, env=self.env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + timeout
            try:
                while child.poll() is None:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"`{' '.join(command[2:])}` timed out; see {log.name}")
                    meanwhile()
                    time.sleep(0.25)
            finally:  # a timeout or a stop signal: it does not outlive the stack
                if child.poll() is None:
                    child.kill()
                    child.wait()
        if child.returncode != 0:
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


def create_work_pool() -> None:
    """`prefect work-pool create cryptolytics --type cryptolytics --overwrite`, in this
    process (the CLI costs seconds of imports): the pool exists before the worker polls it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    from flows.runtime.warm_worker import WarmProcessWorker

    pool = WorkPoolCreate(
        name=POOL, type=POOL, base_job_template=WarmProcessWorker.get_default_base_job_template()
    )
    with get_client(sync_client=True) as client:
        client.create_work_pool(pool, overwrite=True)


def deployed_definitions() -> tuple[str, set[str]]:
    """What `prefect deploy --all` reads (prefect.yaml and its entrypoints' files), hashed,
    and the deployments' names."""
    import yaml

    spec = PROJECT_ROOT / "prefect.yaml"
    digest = hashlib.sha256(spec.read_bytes())
    names = set()
    for deployment in yaml.safe_load(spec.read_text())["deployments"]:
        digest.update((PROJECT_ROOT / deployment["entrypoint"].split(":")[0]).read_bytes())
        names.add(deployment["name"])
    return digest.hexdigest(), names


def deploy_needed(stamp: Path, definitions: str, names: set[str]) -> bool:
    """A restart skips `prefect deploy --all` (about 10 s here) when it deployed these same
    definitions to this server before and every deployment is still there."""
    if not stamp.exists() or stamp.read_text() != definitions:
        return True
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return not names <= {d.name for d in our_deployments(client)}


def start_first_tick(settings: Settings) -> bool:
    """The first tick now. Returns whether the demo backfill of 2021 is due (the replay,
    and no history yet): it is asked for once that tick is done, so the two do not share
    the first minute's CPU. 'Replay' is decided as the flows decide it (`resolve_source`)."""
    from prefect.deployments import run_deployment

    from flows.adapters.source import resolve_source
    from flows.adapters.targets import resolve_target

    source = resolve_source(settings)
    if not source.live:
        print(
            "No CoinCap API key (CRYPTOLYTICS_COINCAP_API_KEY, or its Secret block on the cloud "
            "target): the pipeline REPLAYS bundled real 2021 market data, one day per tick "
            f"(the first tick on an empty lake: {settings.replay_seed_days} days). "
            "It is not live data.",
            flush=True,
        )
    run_deployment("pipeline/pipeline", timeout=0)
    return not source.live and not resolve_target(settings).lake.list_history()


def start_demo_backfill() -> None:
    from prefect.deployments import run_deployment

    run_deployment(
        "backfill/backfill",
        parameters={"interval": "d1", "top": DEMO_BACKFILL_COINS},
        timeout=0,
    )
    print(f"Replay demo: backfilling 2021 for the top {DEMO_BACKFILL_COINS} coins.", flush=True)


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
    # the worker asks for due runs every 2 s, not 10: the first tick starts when it is ready
    env = {"PREFECT_WORKER_QUERY_SECONDS": "2", **os.environ}
    children = Children(args.logs, {**env, "PREFECT_API_URL": api_url, "PWD": str(PROJECT_ROOT)})
    prefect = [sys.executable, "-m", "prefect"]
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server_up, failed = False, False
    app_url, ui_url = f"http://127.0.0.1:{args.app_port}", f"http://127.0.0.1:{args.port}"
    milestones = Milestones(app_url, args.logs / "worker.log")
    with stop_on_signals(), temporary_settings(updates={PREFECT_API_URL: api_url}):
        try:
            print("Starting the analyst app and the Prefect server ...", flush=True)
            # all three at once: the app needs nothing else, and a worker given its type
            # starts (imports, dbt's manifest) before the server answers, then connects
            children.start("streamlit", streamlit_command(args.app_port))
            children.start("worker", [*prefect, "worker", "start", "--pool", POOL, "--type", POOL])
            server = children.start(
                "prefect-server",
                [*prefect, "server", "start", "--host", "127.0.0.1", "--port", str(args.port)],
            )
            wait_healthy(
                api_url,
                server,
                args.logs / "prefect-server.log",
                args.startup_timeout,
                meanwhile=milestones.check,
            )
            server_up = True
            milestones.say(f"Prefect UI ready: {ui_url}")
            create_work_pool()
            stamp, (definitions, names) = deploy_stamp(), deployed_definitions()
            if deploy_needed(stamp, definitions, names):
                stamp.unlink(missing_ok=True)
                children.run(
                    "deploy",
                    [*prefect, "--no-prompt", "deploy", "--all"],
                    meanwhile=milestones.check,
                )
                stamp.write_text(definitions)
                deployed = "Deployed prefect.yaml"
            else:
                deployed = "prefect.yaml is deployed (unchanged)"
            set_schedules(active=True)
            milestones.say(f"{deployed}: the pipeline runs every 5 minutes")
            started = datetime.now(tz=UTC)
            backfill_due = start_first_tick(settings)
            print(f"(Ctrl-C stops everything; logs in {args.logs})", flush=True)
            seen: set[Any] = set()
            while (problem := children.dead()) is None:
                milestones.check()
                with contextlib.suppress(Exception):  # a busy server: try again next time
                    for line in finished_runs(started, seen):
                        print(line, flush=True)
                        if backfill_due and " pipeline " in line:
                            start_demo_backfill()
                            backfill_due = False
                time.sleep(0.5 if milestones.pending else 2)
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
