"""Benchmark worker: pipeline ticks as the deployment runs them, in one fresh process.

    python -m bench.tick --ticks 20 [--full-refresh] [--cold]

Run by bench.suite with the environment of one benchmark workspace (lake, warehouse,
a Prefect server, CoinCap base URL of a replay server on 127.0.0.1). Each tick is a run of
the `pipeline` deployment created "now" through the Prefect API:

- warm (default): picked up by the same warm runner `make up` uses (flows/warm_runner.py,
  polling every second), so latency counts the poll, the claim, the flow run and its end;
- `--cold`: served by Prefect's own runner, which starts a new Python process per run,
  the way `flow.serve` and a process worker run it.

Prints one JSON object: per tick, scheduled -> finished latency and (warm) the stage
breakdown the flow measured, the warm process's first tick apart (it parses the dbt
project), and the warm process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from flows.pipeline import PipelineResult, pipeline
from flows.warm_runner import start_in_background


def peak_rss_mb() -> float:
    """This process's high-water RSS (VmHWM). Not ru_maxrss: on Linux that carries the
    parent's peak across fork and exec, so it would report the suite's memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def latency(flow_run_id: Any) -> float:
    """Seconds from the run's scheduled start to its end, as the Prefect API records them."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
    return (run.end_time - run.expected_start_time).total_seconds()


def stages(result: PipelineResult) -> dict[str, float]:
    extract = result.extracted.seconds
    return {
        "fetch": extract["fetch"],
        "validate": extract["validate"],
        "lake_write": extract["lake_write"],
        "load": result.seconds["load"],
        "dbt": result.transformed.seconds,
        "publish": result.transformed.publish_seconds,
        "flow_run": sum(result.seconds.values()),
    }


def wait_for_deployment(name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            try:
                client.read_deployment_by_name(name)
                return
            except ObjectNotFound:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def warm_ticks(count: int, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    deployment = pipeline.to_deployment(name="bench", concurrency_limit=1)
    deployment_id = deployment.apply()
    finished: list[Any] = []
    done = threading.Event()

    def on_done(state: Any) -> None:
        finished.append(state)
        done.set()

    stop = start_in_background(pipeline, deployment_id, on_done=on_done)
    ticks = []
    try:
        for _ in range(count):
            done.clear()
            run = run_deployment("pipeline/bench", parameters=parameters, timeout=0)
            if not done.wait(600):
                raise TimeoutError("the warm runner did not finish the tick in 10 minutes")
            state = finished[-1]
            result: PipelineResult = state.result()
            ticks.append({"latency": latency(run.id), **stages(result)})
    finally:
        stop.set()
    return ticks


def cold_ticks(count: int, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """Prefect's runner (`flow.serve`) in its own process: a new process per flow run,
    as a process worker runs them too."""
    serve = "from flows.pipeline import pipeline; pipeline.serve(name='bench-cold', limit=1)"
    runner = subprocess.Popen([sys.executable, "-c", serve], stdout=subprocess.DEVNULL)
    ticks = []
    try:
        wait_for_deployment("pipeline/bench-cold")
        for _ in range(count):
            run = run_deployment("pipeline/bench-cold", parameters=parameters, timeout=600)
            if not run.state or not run.state.is_completed():
                raise RuntimeError(f"cold tick ended {run.state}")
            ticks.append({"latency": latency(run.id)})
    finally:
        runner.send_signal(signal.SIGINT)
        runner.wait(60)
    return ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--full-refresh", action="store_true", help="the seed design")
    parser.add_argument("--cold", action="store_true", help="a new process per run")
    args = parser.parse_args()
    parameters = {"full_refresh": args.full_refresh}
    if args.cold:
        ticks, first = cold_ticks(args.ticks, parameters), None
    else:
        # the process's first tick imports nothing more but parses the dbt project: apart
        first, *ticks = warm_ticks(args.ticks + 1, parameters)
    peak = None if args.cold else round(peak_rss_mb(), 1)  # cold: runs in other processes
    print(json.dumps({"ticks": ticks, "first_tick": first, "peak_rss_mb": peak}))


if __name__ == "__main__":
    main()
