"""load: every lake file not yet in the warehouse -> raw table, one transaction per file.

python -m flows.load
"""

from __future__ import annotations

import argparse
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.settings import get_settings
from flows.targets import Target, resolve_target
from flows.warehouse import LoadError, LoadResult, load_pending


def _retry_unless_bad_file(task: Any, task_run: Any, state: Any) -> bool:
    """A file that cannot be parsed will not parse on a retry; a locked or busy warehouse may."""
    try:
        state.result()
    except LoadError:
        return False
    except Exception:
        return True
    return False


@task(
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_retry_unless_bad_file,
)
def load_lake_files(target: Target) -> LoadResult:
    with target.open_warehouse() as warehouse:
        return load_pending(target.lake, warehouse)


@flow(name="load")
def load() -> LoadResult:
    """Catch the warehouse up with the lake; safe to run any number of times."""
    logger = get_run_logger()
    result = load_lake_files(resolve_target(get_settings()))
    logger.info(
        "Loaded %d rows from %d new lake file(s); %d file(s) were already loaded.",
        result.rows_loaded,
        result.files_loaded,
        result.files_already_loaded,
    )
    return result


def main() -> None:
    argparse.ArgumentParser(
        description="Load every lake file not yet in the warehouse."
    ).parse_args()
    load()


if __name__ == "__main__":
    main()
