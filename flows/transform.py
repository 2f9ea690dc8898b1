"""transform: dbt build (staging, dimension, fact, marts and their tests) through prefect-dbt.

python -m flows.transform [--full-refresh]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings

from flows.serving import PublishResult
from flows.settings import get_settings
from flows.targets import Target, resolve_target
from flows.warehouse import DbtNodeResult


class DbtBuildFailed(RuntimeError):
    """A model or a data test failed; the results are recorded for the health page."""


def node_result(node: Any) -> DbtNodeResult:
    """One dbt node's outcome, as the warehouse keeps it."""
    return DbtNodeResult(
        node=node.node.name,
        resource_type=str(node.node.resource_type),
        status=str(node.status),
        seconds=float(node.execution_time or 0),
        message=node.message,
    )


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
def publish_for_readers(target: Target, full: bool) -> PublishResult | None:
    """Make the new models visible to the app (see flows/serving.py)."""
    return target.publish(full)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
def apply_retention(target: Target, days: int) -> int:
    with target.open_warehouse() as warehouse:
        return warehouse.apply_retention(days)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
def record_dbt_results(target: Target, results: list[DbtNodeResult]) -> None:
    with target.open_warehouse() as warehouse:
        warehouse.record_dbt_results(results)


@dataclass(frozen=True)
class TransformResult:
    models_built: int
    tests_passed: int
    seconds: float  # time dbt spent in its nodes
    publish_seconds: float


@contextmanager
def dbt_environment(values: dict[str, str]) -> Iterator[None]:
    """What the dbt profile reads, set for the duration of the run only."""
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@flow(name="transform")
def transform(full_refresh: bool = False) -> TransformResult:
    """Build every dbt model incrementally (or from scratch) and run the data tests."""
    logger = get_run_logger()
    settings = get_settings()
    target = resolve_target(settings)
    args = ["build", "--target", target.dbt_target]
    if full_refresh:
        args.append("--full-refresh")
    dbt_settings = PrefectDbtSettings(
        project_dir=settings.dbt_project_dir, profiles_dir=settings.dbt_project_dir
    )
    with dbt_environment({"DO_NOT_TRACK": "1", **target.dbt_env}):
        try:
            result = PrefectDbtRunner(settings=dbt_settings, raise_on_failure=False).invoke(args)
        finally:
            target.release_dbt()
    nodes = list(result.result or [])
    record_dbt_results(target, [node_result(n) for n in nodes])
    failed = [n.node.name for n in nodes if str(n.status) in ("error", "fail")]
    if not result.success:
        raise DbtBuildFailed(f"dbt build failed: {failed or result.exception}")
    if settings.facts_retention_days:
        dropped = apply_retention(target, settings.facts_retention_days)
        logger.info(
            "Retention: %d five-minute row(s) older than %d days dropped (their rollups stay).",
            dropped,
            settings.facts_retention_days,
        )
    published = publish_for_readers(target, full_refresh)
    models = sum(1 for n in nodes if n.node.resource_type == "model")
    tests = sum(
        1 for n in nodes if n.node.resource_type in ("test", "unit_test") and n.status == "pass"
    )
    seconds = sum(n.execution_time or 0 for n in nodes)
    logger.info(
        "dbt build: %d models built, %d tests passed (%.1fs in nodes).", models, tests, seconds
    )
    if published is not None:
        logger.info(
            "Published serving copy %r for the app in %.2fs: %s",
            published.copy,
            published.seconds,
            published.rows_copied,
        )
    return TransformResult(
        models_built=models,
        tests_passed=tests,
        seconds=seconds,
        publish_seconds=published.seconds if published else 0.0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the dbt models and run their tests.")
    parser.add_argument(
        "--full-refresh", action="store_true", help="rebuild incremental models from raw"
    )
    args = parser.parse_args()
    transform(full_refresh=args.full_refresh)


if __name__ == "__main__":
    main()
