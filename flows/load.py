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
def load_lake_files(target: Target, reload: bool = False) -> LoadResult:
    with target.open_warehouse() as warehouse:
        if reload:
            warehouse.forget_loads()
        return load_pending(target.lake, warehouse)


def load_lake(target: Target, reload: bool = False) -> LoadResult:
    """Catch the warehouse up with the lake (inside the `load` or `pipeline` flow)."""
    logger = get_run_logger()
    result = load_lake_files(target, reload)
    logger.info(
        "Loaded %d rows from %d new lake file(s); %d file(s) were already loaded.",
        result.rows_loaded,
        result.files_loaded,
        result.files_already_loaded,
    )
    return result


@flow(name="load")
def load(reload: bool = False) -> LoadResult:
    """Catch the warehouse up with the lake; safe to run any number of times. `reload`
    empties the raw tables first and reads the whole lake again (after retention, to
    rebuild old ranges: then run `transform --full-refresh`)."""
    return load_lake(resolve_target(get_settings()), reload)


def main() -> None:
    parser = argparse.ArgumentParser(description="Load every lake file not yet in the warehouse.")
    parser.add_argument(
        "--reload", action="store_true", help="empty the raw tables and load the whole lake again"
    )
    load(reload=parser.parse_args().reload)


if __name__ == "__main__":
    main()
