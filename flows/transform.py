"""transform: dbt build (staging, dimension, fact, marts and their data tests), kept warm.

    python -m flows.transform [--full-refresh]

dbt runs in this process from a manifest parsed once per process (flows/dbt_build.py), as one
Prefect task that logs every node as it finishes and leaves a table artifact of the node
results, so the Prefect UI still shows the whole dbt run without one task per node.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.dbt_build import DbtBuild, WarmDbt
from flows.serving import PublishResult
from flows.settings import Settings, get_settings
from flows.targets import Target, resolve_target
from flows.warehouse import DbtNodeResult


class DbtBuildFailed(RuntimeError):
    """A model or a data test failed; the results are recorded for the health page."""


_warm: dict[tuple[str, str], WarmDbt] = {}  # one parsed project per process and target


def warm_dbt(target: Target, project_dir: str) -> WarmDbt:
    key = (project_dir, target.name)
    if key not in _warm:
        _warm[key] = WarmDbt(Path(project_dir), release=target.release_dbt)
    return _warm[key]


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=[5])
def dbt_build(target: Target, project_dir: str, full_refresh: bool) -> DbtBuild:
    """All models and data tests in one task; each finished node is logged as it happens."""
    logger = get_run_logger()

    def log_node(node: DbtNodeResult) -> None:
        log = logger.info if node.status in ("success", "pass") else logger.warning
        log("dbt %s %s: %s in %.2fs", node.resource_type, node.node, node.status, node.seconds)

    runner = warm_dbt(target, project_dir)
    runner.on_node = log_node
    build = runner.build(target.dbt_target, target.dbt_env, full_refresh=full_refresh)
    logger.info(
        "dbt: %s, build %.2fs.",
        f"parsed in {build.parse_seconds:.2f}s" if build.parsed else "warm manifest reused",
        build.build_seconds,
    )
    create_table_artifact(
        key="dbt-results",
        table=[
            {
                "node": n.node,
                "type": n.resource_type,
                "status": n.status,
                "seconds": round(n.seconds, 3),
                "message": n.message or "",
            }
            for n in build.nodes
        ],
        description="Every dbt node of this build",
    )
    return build


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
    seconds: float  # dbt build wall time (parse excluded)
    publish_seconds: float


def build_and_publish(settings: Settings, target: Target, full_refresh: bool) -> TransformResult:
    """dbt build, its results kept, retention, then publish for the app (inside any flow)."""
    logger = get_run_logger()
    build = dbt_build(target, str(settings.dbt_project_dir), full_refresh)
    record_dbt_results(target, build.nodes)
    if not build.success:
        raise DbtBuildFailed(f"dbt build failed: {build.failed or build.error}")
    if settings.facts_retention_days:
        dropped = apply_retention(target, settings.facts_retention_days)
        logger.info(
            "Retention: %d five-minute row(s) older than %d days dropped (their rollups stay).",
            dropped,
            settings.facts_retention_days,
        )
    published = publish_for_readers(target, full_refresh)
    logger.info(
        "dbt build: %d models built, %d tests passed in %.2fs.",
        build.models_built,
        build.tests_passed,
        build.build_seconds,
    )
    if published is not None:
        logger.info(
            "Published serving copy %r for the app in %.2fs: %s",
            published.copy,
            published.seconds,
            published.rows_copied,
        )
    return TransformResult(
        models_built=build.models_built,
        tests_passed=build.tests_passed,
        seconds=build.build_seconds,
        publish_seconds=published.seconds if published else 0.0,
    )


@flow(name="transform")
def transform(full_refresh: bool = False) -> TransformResult:
    """Build every dbt model incrementally (or from scratch) and run the data tests."""
    settings = get_settings()
    return build_and_publish(settings, resolve_target(settings), full_refresh)


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the dbt models and run their tests.")
    parser.add_argument(
        "--full-refresh", action="store_true", help="rebuild incremental models from raw"
    )
    args = parser.parse_args()
    transform(full_refresh=args.full_refresh)


if __name__ == "__main__":
    main()
