"""Serve the `pipeline` deployment on a 5-minute schedule and the `backfill` deployment
(on demand, with parameters) from this process, and start the first tick at once; with the
replay and no history yet, also a backfill of 2021. Needs a Prefect server
(`PREFECT_API_URL`); `make up` starts one.

Pipeline ticks run inside this process, warm (flows/warm_runner.py); backfills run the
usual Prefect way, each in its own process.

    python -m flows.serve [--interval-seconds 300] [--no-first-tick]
"""

from __future__ import annotations

import argparse
from datetime import timedelta

from prefect import serve
from prefect.deployments import run_deployment

from flows.backfill import backfill
from flows.pipeline import pipeline
from flows.settings import get_settings
from flows.targets import resolve_target
from flows.warm_runner import pause_schedule, start_in_background

DEPLOYMENT = "pipeline/pipeline"
DEMO_BACKFILL_COINS = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the pipeline on a schedule.")
    parser.add_argument("--interval-seconds", type=int, default=300)
    parser.add_argument("--no-first-tick", action="store_true", help="wait for the schedule")
    args = parser.parse_args()
    ticks = pipeline.to_deployment(
        name="pipeline",
        interval=timedelta(seconds=args.interval_seconds),
        concurrency_limit=1,  # a slow tick delays the next one; runs never pile up in parallel
        description="One tick every 5 minutes: CoinCap -> lake -> warehouse -> dbt.",
        tags=["cryptolytics"],
    )
    history = backfill.to_deployment(
        name="backfill",
        concurrency_limit=1,
        description="Price history from /assets/{id}/history; run it with parameters.",
        tags=["cryptolytics"],
    )
    pipeline_id = ticks.apply()
    history.apply()
    stop_ticks = start_in_background(pipeline, pipeline_id)
    if not args.no_first_tick:
        run = run_deployment(DEPLOYMENT, timeout=0)
        print(f"First tick scheduled now: flow run {run.name}")
    settings = get_settings()
    if settings.effective_source == "replay" and not resolve_target(settings).lake.list_history():
        # the offline demo starts with a year of daily history, not one day
        run = run_deployment(
            "backfill/backfill",
            parameters={"interval": "d1", "top": DEMO_BACKFILL_COINS},
            timeout=0,
        )
        print(f"Replay demo: backfilling 2021 for the top {DEMO_BACKFILL_COINS} coins ({run.name})")
    try:
        serve(history)
    finally:
        stop_ticks.set()
        pause_schedule(pipeline_id)


if __name__ == "__main__":
    main()
