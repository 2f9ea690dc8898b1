"""Crash anywhere, lose nothing: real SIGKILLs of real pipeline processes at many points.

Each cycle forks a process running the real `pipeline` flow (testkit/crash_tick.py) that
SIGKILLs itself at a chosen moment: during fetch, during or right after the lake write,
mid-load, while moving a broken lake file to quarantine, mid-dbt, during publish, or while
rebuilding a damaged serving copy. A normal tick follows in a new process, and then the
warehouse must hold exactly what the lake holds (per snapshot: row count, coin ids and a
price checksum), with no duplicates, the models must agree with the raw rows, and the app's
serving copy with the models.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
from collections import Counter
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL

from flows.core.settings import Settings
from testkit import crash_tick
from testkit.crash_tick import KILL_POINTS
from testkit.pipeline import assert_warehouse_equals_lake

pytestmark = [pytest.mark.e2e, pytest.mark.prefect, pytest.mark.usefixtures("prefect_server")]


def forkserver(monkeypatch: pytest.MonkeyPatch) -> multiprocessing.context.ForkServerContext:
    """Warm tick processes: the forkserver imports Prefect (with this test's server), dbt and
    DuckDB once."""
    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(crash_tick.PRELOAD)
    return context


def tick_environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key.startswith("CRYPTOLYTICS_")}
    return {**env, "CRYPTOLYTICS_ASSET_LIMIT": "300"}


def tick_in_process(
    context: multiprocessing.context.ForkServerContext,
    env: dict[str, str],
    stage_file: Path,
    kill_stage: str | None = None,
    delay: float = 0.0,
) -> tuple[int | None, str]:
    process = context.Process(
        target=crash_tick.run_tick, args=(env, str(stage_file), kill_stage, delay)
    )
    process.start()
    process.join(300)
    assert process.exitcode is not None, "tick process hung"
    return process.exitcode, stage_file.read_text() if stage_file.exists() else "not started"


def test_sigkill_anywhere_in_a_tick_loses_nothing(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kill_cycles: int
) -> None:
    """`pytest --kill-cycles N`: N kills, spread evenly over the kill points (CI: 14)."""
    env = tick_environment()
    context = forkserver(monkeypatch)
    stage_file = tmp_path / "stage"
    rng = random.Random(7)
    plan = [KILL_POINTS[n % len(KILL_POINTS)] for n in range(kill_cycles)]
    rng.shuffle(plan)

    exitcode, stage = tick_in_process(context, env, stage_file)  # a first whole tick
    assert (exitcode, stage) == (0, "done")
    died_in: Counter[str] = Counter()
    for kill_stage, longest in plan:
        exitcode, stage = tick_in_process(
            context, env, stage_file, kill_stage, rng.uniform(0, longest)
        )
        assert exitcode == -signal.SIGKILL, f"not killed (aimed at {kill_stage}, got {stage})"
        died_in[stage] += 1
        exitcode, stage = tick_in_process(context, env, stage_file)  # the next normal run
        assert (exitcode, stage) == (0, "done")
        snapshots = assert_warehouse_equals_lake(settings)

    # every kill point was exercised, and every surviving snapshot is in the warehouse
    assert set(died_in) >= {stage for stage, _ in plan}, died_in
    assert snapshots >= len(plan)  # each normal run adds its snapshot
    print(f"{len(plan)} kills, died in: {dict(died_in)}; {snapshots} snapshots, all exact")


def test_runs_started_at_once_take_turns(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three pipeline processes started together (a slow tick overlapping the next, a CLI
    run on top): each waits for the lake's lock to take its snapshot and for the
    warehouse's lock to load and build, so no two runs are ever inside the same lock, and
    each adds its own snapshot exactly once."""
    env, context = tick_environment(), forkserver(monkeypatch)
    journal = tmp_path / "journal"
    processes = [
        context.Process(
            target=crash_tick.run_tick,
            args=(env, str(tmp_path / f"stage-{n}"), None, 0.0, str(journal)),
        )
        for n in range(3)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(300)
    assert [p.exitcode for p in processes] == [0, 0, 0]

    # the snapshot is taken under the lake's lock, the rest under the warehouse's: each lock's
    # stages run one run after another, whole ("done" is written once a run let go)
    entries = [line.split() for line in journal.read_text().splitlines()]
    for stages in (("fetch", "lake_write"), ("load", "dbt", "publish")):
        locked = [(pid, stage) for pid, stage in entries if stage in stages]
        runs = [pid for pid, _ in locked]
        blocks = [pid for n, pid in enumerate(runs) if n == 0 or pid != runs[n - 1]]
        assert len(blocks) == len(set(blocks)) == 3, entries
        assert [stage for _, stage in locked] == list(stages) * 3, entries
    for pid in {pid for pid, _ in entries}:  # and each run fetched before it loaded
        own = [stage for who, stage in entries if who == pid]
        assert own.index("lake_write") < own.index("load") < own.index("publish"), own
    assert assert_warehouse_equals_lake(settings) == 3  # three replay days, none twice
