"""Benchmark worker: pipeline ticks, in one fresh process.

    python -m bench.tick --ticks 20 [--full-refresh] [--worker cryptolytics|process]

Run by bench.suite with the environment of one benchmark workspace (lake, warehouse,
a Prefect server, CoinCap base URL of a replay server on 127.0.0.1).

- in-process (default): `pipeline()` called in this process again and again, the warm
  in-process figure: the flow run's wall time, the stage breakdown the flow measured, the
  first tick apart (it parses the dbt project), and this process's peak RSS.
- `--worker TYPE`: the production path. The `pipeline` flow deployed with `prefect deploy`
  to a pool of that type, `prefect worker start` on it, and each tick a run scheduled a
  few seconds ahead as Prefect's scheduler does; latency is scheduled -> completed as the
  API records it. `cryptolytics` is our warm worker, `process` Prefect's own.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client

from flows.core.settings import PROJECT_ROOT
from flows.pipeline import PipelineResult, pipeline
from testkit.signals import restore_sigint

# A scheduler creates runs ahead of time; a worker picks them up within its poll interval
# (10 s) and the server holds them until their time comes.
SCHEDULE_AHEAD_SECONDS = 15


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


def in_process_ticks(count: int, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    ticks = []
    for _ in range(count):
        started = time.perf_counter()
        result = pipeline(**parameters)
        ticks.append({"latency": time.perf_counter() - started, **stages(result)})
    return ticks


def worker_ticks(count: int, parameters: dict[str, Any], worker: str) -> list[dict[str, Any]]:
    """Ticks of a deployment on a pool of type `worker`, run by `prefect worker start`."""
    from prefect.client.schemas.objects import StateType
    from prefect.states import Scheduled

    pool, name = f"bench-{worker}", f"bench-{worker}"
    prefect = [sys.executable, "-m", "prefect", "--no-prompt"]
    for command in (
        ["work-pool", "create", pool, "--type", worker, "--overwrite"],
        ["deploy", "flows/pipeline.py:pipeline", "--name", name, "--pool", pool],
    ):
        subprocess.run([*prefect, *command], cwd=PROJECT_ROOT, check=True, capture_output=True)
    process = subprocess.Popen(
        [*prefect, "worker", "start", "--pool", pool, "--limit", "1"],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    ticks = []
    try:
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(f"pipeline/{name}")
            for _ in range(count):
                at = datetime.now(tz=UTC) + timedelta(seconds=SCHEDULE_AHEAD_SECONDS)
                run = client.create_flow_run_from_deployment(
                    deployment.id, parameters=parameters, state=Scheduled(scheduled_time=at)
                )
                deadline = time.monotonic() + 600
                while not (state := client.read_flow_run(run.id).state).is_final():
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{worker} worker: tick not done in 10 minutes")
                    time.sleep(0.5)
                if state.type != StateType.COMPLETED:
                    raise RuntimeError(f"{worker} worker: tick ended {state}")
                ticks.append({"latency": latency(run.id)})
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)
    return ticks


def main() -> None:
    restore_sigint()  # the workers and servers we start must stop on SIGINT
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--full-refresh", action="store_true", help="the seed design")
    parser.add_argument("--worker", choices=["cryptolytics", "process"], help="deployment runs")
    args = parser.parse_args()
    parameters = {"full_refresh": args.full_refresh}
    if args.worker:
        ticks, first = worker_ticks(args.ticks, parameters, args.worker), None
    else:
        # the process's first tick imports nothing more but parses the dbt project: apart
        first, *ticks = in_process_ticks(args.ticks + 1, parameters)
    peak = None if args.worker else round(peak_rss_mb(), 1)  # workers: other processes
    print(json.dumps({"ticks": ticks, "first_tick": first, "peak_rss_mb": peak}))


if __name__ == "__main__":
    main()
