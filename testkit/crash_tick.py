"""A real pipeline tick in a process of its own that SIGKILLs itself at a chosen point
(tests/test_fault_injection.py, bench/soak.py).

The test forks these processes from a forkserver that has already imported Prefect, dbt and
DuckDB, so a tick starts warm and many kill points fit in a CI run (Prefect reads its settings
when imported: the forkserver must start with PREFECT_API_URL set). Each process runs the
real `pipeline` flow against the test's Prefect server. The steps it may die in are marked by
wrapping the plain functions the flow's tasks call (behaviour unchanged): on entering
`kill_stage` a timer sends SIGKILL to the process after `delay` seconds, inside that stage
or, for a longer delay, in a later one.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flows.adapters.coincap
import flows.adapters.lake
import flows.adapters.serving
import flows.adapters.targets
import flows.load
import flows.pipeline
from flows.adapters.dbt_runner import WarmDbt

PRELOAD = ["flows.pipeline", "testkit.crash_tick"]

# (stage, longest delay after entering it): long enough to land inside the stage, sometimes
# just after it (after the lake write, between load and dbt, ...)
KILL_POINTS = (
    ("fetch", 0.03),
    ("lake_write", 0.03),
    ("load", 0.03),
    ("dead_letter", 0.05),  # moving a broken 8 MB lake file to quarantine
    ("dbt", 1.5),
    ("publish", 0.2),
    ("serving_rebuild", 0.3),  # rebuilding a damaged serving copy from the warehouse
)


def _marked(stage: str, function: Callable[..., Any], on_enter: Callable[[str], None]) -> Any:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        on_enter(stage)
        return function(*args, **kwargs)

    return wrapper


def run_tick(
    env: dict[str, str],
    stage_file: str,
    kill_stage: str | None,
    delay: float,
    journal: str | None = None,
) -> None:
    """One tick; each stage entered is written to `stage_file` and, if given, appended with
    this process's id to `journal` (shared by ticks that run at the same time)."""
    os.environ.update(env)
    reached = Path(stage_file)

    def on_enter(stage: str) -> None:
        reached.write_text(stage)
        if journal:
            with open(journal, "a") as entries:
                entries.write(f"{os.getpid()} {stage}\n")
        if stage == kill_stage:
            threading.Timer(delay, os.kill, (os.getpid(), signal.SIGKILL)).start()

    if kill_stage == "dead_letter":
        plant_broken_lake_file()
    if kill_stage == "serving_rebuild":
        damage_the_copy_the_next_publish_writes()
    patches = [
        (flows.adapters.coincap.CoinCapClient, "fetch_asset_pages", "fetch"),
        (flows.adapters.lake.Lake, "write_snapshot", "lake_write"),
        (flows.load, "load_pending", "load"),
        (flows.adapters.lake.Lake, "dead_letter", "dead_letter"),
        (WarmDbt, "build", "dbt"),
        (flows.adapters.targets, "publish", "publish"),
        (flows.adapters.serving, "_remove_copy", "serving_rebuild"),
    ]
    for owner, name, stage in patches:
        setattr(owner, name, _marked(stage, getattr(owner, name), on_enter))
    flows.pipeline.pipeline()
    on_enter("done")


def plant_broken_lake_file() -> None:
    """A snapshot file that is not gzip (8 MB of noise: a disk error, a stray copy): the
    load moves it to quarantine, and this tick dies during that move (copy, note, delete)."""
    from flows.core.settings import get_settings

    lake = Path(get_settings().lake_url)
    name = lake / "raw/replay/assets/date=2020-12-31" / f"{1609372800000 + os.getpid()}.json.gz"
    name.parent.mkdir(parents=True, exist_ok=True)
    name.write_bytes(os.urandom(8 * 2**20))


def damage_the_copy_the_next_publish_writes() -> None:
    """Garbage in the serving copy readers are not using: the publish rebuilds it from the
    warehouse, and this tick dies during the rebuild."""
    from flows.adapters.serving import current_copy
    from flows.core.settings import get_settings

    serving = get_settings().serving_dir
    current = current_copy(serving)
    if current is not None:
        other = serving / ("a.duckdb" if current.stem == "b" else "b.duckdb")
        other.write_bytes(os.urandom(32 * 1024))
