"""transform: dbt build (staging, dimension, fact, marts and their tests) through prefect-dbt.

python -m flows.transform [--full-refresh]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prefect import flow, get_run_logger
from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings

from flows.settings import get_settings
from flows.targets import resolve_target


@dataclass(frozen=True)
class TransformResult:
    models_built: int
    tests_passed: int
    seconds: float


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
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
    with _environment({"DO_NOT_TRACK": "1", **target.dbt_env}):
        try:
            result = PrefectDbtRunner(settings=dbt_settings, raise_on_failure=True).invoke(args)
        finally:
            target.release_dbt()
    nodes = list(result.result or [])
    models = sum(1 for n in nodes if n.node.resource_type == "model")
    tests = sum(
        1 for n in nodes if n.node.resource_type in ("test", "unit_test") and n.status == "pass"
    )
    seconds = sum(n.execution_time or 0 for n in nodes)
    logger.info(
        "dbt build: %d models built, %d tests passed (%.1fs in nodes).", models, tests, seconds
    )
    return TransformResult(models_built=models, tests_passed=tests, seconds=seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the dbt models and run their tests.")
    parser.add_argument(
        "--full-refresh", action="store_true", help="rebuild incremental models from raw"
    )
    args = parser.parse_args()
    transform(full_refresh=args.full_refresh)


if __name__ == "__main__":
    main()
