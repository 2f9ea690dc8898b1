"""Serve the `pipeline` deployment on a 5-minute schedule from this process, and start
the first tick at once. Needs a Prefect server (`PREFECT_API_URL`); `make up` starts one.

    python -m flows.serve [--interval-seconds 300] [--no-first-tick]
"""

from __future__ import annotations

import argparse
from datetime import timedelta

from prefect import serve
from prefect.deployments import run_deployment

from flows.pipeline import pipeline

DEPLOYMENT = "pipeline/pipeline"


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the pipeline on a schedule.")
    parser.add_argument("--interval-seconds", type=int, default=300)
    parser.add_argument("--no-first-tick", action="store_true", help="wait for the schedule")
    args = parser.parse_args()
    deployment = pipeline.to_deployment(
        name="pipeline",
        interval=timedelta(seconds=args.interval_seconds),
        concurrency_limit=1,  # a slow tick delays the next one; runs never pile up in parallel
        description="One tick every 5 minutes: CoinCap -> lake -> warehouse -> dbt.",
        tags=["cryptolytics"],
    )
    deployment.apply()
    if not args.no_first_tick:
        run = run_deployment(DEPLOYMENT, timeout=0)
        print(f"First tick scheduled now: flow run {run.name}")
    serve(deployment)


if __name__ == "__main__":
    main()
