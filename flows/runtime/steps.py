"""The three kinds of Prefect task the flows are made of, each with its retries and its
bound (flows/core/settings.py): one place, so a step's kind says how it may fail and how long
it may take. Nothing is cached: every step does I/O whose result must be fresh."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.core.settings import (
    DBT_TASK_TIMEOUT_SECONDS,
    LAKE_TASK_TIMEOUT_SECONDS,
    WAREHOUSE_TASK_TIMEOUT_SECONDS,
)

# a warehouse step: retried, since a busy warehouse passes and every step is idempotent
warehouse_step = task(
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 10],
    timeout_seconds=WAREHOUSE_TASK_TIMEOUT_SECONDS,
)
# one lake write or quarantine: retried quickly, a write is whole or absent
lake_step = task(
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[1, 5],
    timeout_seconds=LAKE_TASK_TIMEOUT_SECONDS,
)
# a dbt invocation: retried once (a locked file, say); a failing test fails it again
dbt_step = task(
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=[5],
    timeout_seconds=DBT_TASK_TIMEOUT_SECONDS,
)
