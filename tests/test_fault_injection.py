"""Crash anywhere, lose nothing: real SIGKILLs of real pipeline processes at many points.

Each cycle forks a process running the real `pipeline` flow (tests/crash_tick.py) that
SIGKILLs itself at a chosen moment: during fetch, during or right after the lake write,
mid-load, mid-dbt or during publish. A normal tick follows in a new process, and then the
warehouse must hold exactly what the lake holds (per snapshot: row count, coin ids and a
price checksum), with no duplicates, the models must agree with the raw rows, and the app's
serving copy with the models.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import signal
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from prefect.settings import PREFECT_API_URL

from flows.lake import Lake
from flows.serving import current_copy
from flows.settings import Settings
from flows.snapshot import parse_snapshot
from tests import crash_tick

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_server")]

# (stage, longest delay after entering it): long enough to land inside the stage, sometimes
# just after it (after the lake write, between load and dbt, ...)
KILL_POINTS = (
    ("fetch", 0.03),
    ("lake_write", 0.03),
    ("load", 0.03),
    ("dbt", 1.5),
    ("publish", 0.2),
)
KILLS_PER_STAGE = int(os.environ.get("CRYPTOLYTICS_KILLS_PER_STAGE", "10"))


def lake_snapshots(lake: Lake) -> dict[str, tuple[int, str, float]]:
    """Per lake file: rows, a digest of the coin ids, the sum of prices."""
    result = {}
    for path in lake.list_snapshots():
        assets = parse_snapshot(lake.read(path)).assets
        ids = ",".join(sorted(asset.id for asset in assets))
        result[path] = (
            len(assets),
            hashlib.md5(ids.encode()).hexdigest(),
            sum(asset.price_usd for asset in assets),
        )
    return result


def warehouse_snapshots(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, str, float]]:
    rows = con.execute(
        "select lake_path, count(*), md5(string_agg(id, ',' order by id)), sum(price_usd) "
        "from raw.coincap_assets group by lake_path"
    ).fetchall()
    return {path: (count, digest, total) for path, count, digest, total in rows}


def assert_warehouse_equals_lake(settings: Settings) -> int:
    lake = lake_snapshots(Lake(settings.lake_url))
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        loaded = warehouse_snapshots(con)
        assert loaded.keys() == lake.keys(), "a lake snapshot is missing or extra in the warehouse"
        for path, (count, digest, total) in lake.items():
            assert loaded[path][:2] == (count, digest), path
            assert loaded[path][2] == pytest.approx(total, rel=1e-12), path
        manifest = dict(con.execute("select lake_path, row_count from raw.lake_files").fetchall())
        assert manifest == {path: figures[0] for path, figures in lake.items()}
        raw_keys = con.execute(
            "select count(*), count(distinct (id, snapshot_at)) from raw.coincap_assets"
        ).fetchall()[0]
        fact_keys = con.execute(
            "select count(*), count(distinct (coin_id, snapshot_at)) from prod.facts_coins"
        ).fetchall()[0]
        assert raw_keys[0] == raw_keys[1] == fact_keys[0] == fact_keys[1]
        per_snapshot = "select snapshot_at, count(*), sum(price_usd) from {} group by 1 order by 1"
        facts = con.execute(per_snapshot.format("prod.facts_coins")).fetchall()
        assert facts == con.execute(per_snapshot.format("raw.coincap_assets")).fetchall()
        overview = con.execute(
            "select snapshot_at, asset_count from prod.mart_market_overview order by 1"
        ).fetchall()
        assert overview == [(at, count) for at, count, _ in facts]
        ranking = con.execute("select count(*), max(snapshot_at) from prod.mart_latest_ranking")
        latest_ranking = ranking.fetchall()[0]
        assert latest_ranking == (facts[-1][1], facts[-1][0])
    serving = current_copy(settings.serving_dir)
    assert serving is not None
    with duckdb.connect(str(serving), read_only=True) as con:
        served = con.execute(
            "select count(*), max(snapshot_at) from prod.mart_latest_ranking"
        ).fetchall()[0]
        assert served == latest_ranking, "the app would show an older or partial ranking"
        served_overview = con.execute(
            "select snapshot_at, asset_count from prod.mart_market_overview order by 1"
        ).fetchall()
        assert served_overview == overview
    return len(lake)


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
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = tick_environment()
    context = forkserver(monkeypatch)
    stage_file = tmp_path / "stage"
    rng = random.Random(7)
    plan = [point for point in KILL_POINTS for _ in range(KILLS_PER_STAGE)]
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
    assert set(died_in) >= {"fetch", "lake_write", "load", "dbt", "publish"}, died_in
    assert snapshots >= len(plan)  # each normal run adds its snapshot
    print(f"{len(plan)} kills, died in: {dict(died_in)}; {snapshots} snapshots, all exact")


def test_runs_started_at_once_take_turns(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three pipeline processes started together (a slow tick overlapping the next, a CLI
    run on top): each waits for the lock, so their stages never interleave, and each
    adds its own snapshot exactly once."""
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

    # stages under the lock ("done" is written once the run has let go of it)
    entries = [line.split() for line in journal.read_text().splitlines()]
    locked = [(pid, stage) for pid, stage in entries if stage != "done"]
    runs = [pid for pid, _ in locked]
    blocks = [pid for n, pid in enumerate(runs) if n == 0 or pid != runs[n - 1]]
    assert len(blocks) == len(set(blocks)) == 3, entries  # one run after another, whole
    assert [stage for _, stage in locked] == ["fetch", "lake_write", "load", "dbt", "publish"] * 3
    assert assert_warehouse_equals_lake(settings) == 3  # three replay days, none twice
