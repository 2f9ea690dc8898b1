"""The whole local stack in one process tree, for `make up`: a Prefect server (SQLite,
UI on http://127.0.0.1:4200), the served `pipeline` deployment and the analyst app
(http://127.0.0.1:8501). Ctrl-C stops all of it.

    python -m flows.stack
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from flows.settings import PROJECT_ROOT, get_settings

PREFECT_PORT = 4200
APP_PORT = 8501


def streamlit_command(port: int) -> list[str]:
    """How the analyst app is started here and in the browser tests."""
    return [
        sys.executable, "-m", "streamlit", "run", "streamlit_app/app.py",
        "--server.headless", "true", "--server.address", "127.0.0.1",
        "--server.port", str(port), "--browser.gatherUsageStats", "false",
    ]  # fmt: skip


def _signal_group(child: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group may be gone already
        os.killpg(child.pid, signum)


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"prefect server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"prefect server not healthy after {timeout:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the local stack until Ctrl-C.")
    parser.add_argument("--port", type=int, default=PREFECT_PORT, help="Prefect server and UI port")
    parser.add_argument("--app-port", type=int, default=APP_PORT, help="Streamlit app port")
    parser.add_argument("--logs", type=Path, default=PROJECT_ROOT / "logs")
    args = parser.parse_args()
    settings = get_settings()
    api_url = f"http://127.0.0.1:{args.port}/api"
    logs = args.logs
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_API_URL": api_url}
    if settings.effective_source == "replay":
        print(
            "No CoinCap API key (CRYPTOLYTICS_COINCAP_API_KEY) is set: the pipeline REPLAYS "
            "bundled real 2021 market data, one day per tick. It is not live data."
        )
    children: list[subprocess.Popen[bytes]] = []
    server_log = open(logs / "prefect-server.log", "ab")  # noqa: SIM115 (lives as long as the server)
    app_log = open(logs / "streamlit.log", "ab")  # noqa: SIM115
    try:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(args.port),
            ],
            env=env,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )
        children.append(server)
        print(f"Starting Prefect server (log: {server_log.name}) ...", flush=True)
        wait_healthy(api_url, server)
        print(f"Prefect UI: http://127.0.0.1:{args.port}  (Ctrl-C stops everything)", flush=True)
        worker = subprocess.Popen(
            [sys.executable, "-m", "flows.serve"], env=env, cwd=PROJECT_ROOT, start_new_session=True
        )
        children.append(worker)
        app = subprocess.Popen(
            streamlit_command(args.app_port),
            env=env,
            cwd=PROJECT_ROOT,
            stdout=app_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        children.append(app)
        print(f"Analyst app: http://127.0.0.1:{args.app_port}", flush=True)
        worker.wait()
    except KeyboardInterrupt:
        print("\nStopping ...")
    finally:
        # Each child leads its own process group, so flow runs the worker started in
        # subprocesses stop with it: SIGINT to every group, then SIGKILL what is left.
        for child in reversed(children):
            _signal_group(child, signal.SIGINT)
        for child in reversed(children):
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=20)
            _signal_group(child, signal.SIGKILL)
        server_log.close()
        app_log.close()


if __name__ == "__main__":
    main()
