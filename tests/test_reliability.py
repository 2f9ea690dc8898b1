"""Single ordinary events that used to wedge the pipeline or lose data silently, each
through the real parts: a clock step, a warehouse rebuilt from the lake, corrupt or
disagreeing serving copies, a row the build's gate refuses, an old bad row, the wrong
kind of data for a lake, flows racing for the warehouse."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flows.adapters.lake import Lake
from flows.adapters.serving import current_copy, publish
from flows.core.settings import PROJECT_ROOT, Settings
from testkit.pipeline import assert_warehouse_equals_lake, replay_bodies, tick
from tests.conftest import body_variant

pytestmark = pytest.mark.integration

# One pipeline process whose wall clock is moved by argv[1] seconds (time-machine patches
# Python's clocks in every thread; the monotonic clock, which bounds the waits, stays true).
# libfaketime did this first, but LD_PRELOAD into dbt's and DuckDB's threads segfaulted on CI.
PIPELINE_ON_A_MOVED_CLOCK = """
import runpy, sys, time, time_machine
shift = float(sys.argv[1])
sys.argv = ["flows.pipeline"]
with time_machine.travel(time.time() + shift, tick=True):
    runpy.run_module("flows.pipeline", run_name="__main__", alter_sys=True)
"""


def query(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


# Serving copies that repair themselves (no Prefect needed: the same functions the flows call)


def test_a_warehouse_rebuilt_from_the_lake_is_published_without_duplicates(
    settings: Settings,
) -> None:
    """The natural repair of a corrupt warehouse: delete it, load the lake again. Its load
    sequence starts again at 1, so the serving copies (made from the old one) are rebuilt
    instead of caught up, which would have appended every fact a second time."""
    days = replay_bodies(4, limit=200)
    for day in days[:3]:
        tick(settings, [("replay", *day)])
    settings.duckdb_path.unlink()
    tick(settings, [("replay", *days[3])])  # loads all four lake files into a new warehouse
    tick(settings, [])  # and the second copy catches up too
    for copy in ("a", "b"):
        served = settings.serving_dir / f"{copy}.duckdb"
        keys = query(
            served,
            "select count(*), count(distinct (coin_id, snapshot_at)) from prod.facts_coins",
        )
        assert keys == [(800, 800)], copy
    assert assert_warehouse_equals_lake(settings) == 4


@pytest.mark.parametrize("damage", ["garbage", "truncated", "rows deleted"])
def test_a_damaged_serving_copy_is_rebuilt_from_the_warehouse(
    settings: Settings, damage: str
) -> None:
    days = replay_bodies(3, limit=200)
    tick(settings, [("replay", *days[0])])
    tick(settings, [("replay", *days[1])])
    current = current_copy(settings.serving_dir)
    assert current is not None
    other = settings.serving_dir / ("a.duckdb" if current.stem == "b" else "b.duckdb")
    if damage == "garbage":
        other.write_bytes(os.urandom(64 * 1024))
    elif damage == "truncated":
        other.write_bytes(other.read_bytes()[:20_000])
    else:
        with duckdb.connect(str(other)) as con:
            con.execute("delete from prod.mart_coin_hourly where coin_id = 'bitcoin'")

    result = publish(settings.duckdb_path, settings.serving_dir)  # writes the damaged one
    assert result.copy == other.stem
    assert result.rebuilt is not None, "the damage went unnoticed"
    for name in ("prod.mart_coin_hourly", "prod.facts_coins", "prod.mart_market_overview"):
        count = f"select count(*) from {name}"
        assert query(other, count) == query(settings.duckdb_path, count), name
    tick(settings, [("replay", *days[2])])  # and every later publish works
    tick(settings, [])
    assert assert_warehouse_equals_lake(settings) == 3


# Prefect flows


def _live_env(monkeypatch: pytest.MonkeyPatch, server: HTTPServer, key: str = "test-key") -> None:
    monkeypatch.setenv("CRYPTOLYTICS_SOURCE", "coincap")
    monkeypatch.setenv("CRYPTOLYTICS_COINCAP_API_KEY", key)
    monkeypatch.setenv("CRYPTOLYTICS_COINCAP_BASE_URL", server.url_for("/v3"))
    monkeypatch.setenv("CRYPTOLYTICS_ASSET_LIMIT", "100")


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_ticks_on_a_clock_hours_fast_then_minutes_slow_lose_nothing(
    settings: Settings,
    httpserver: HTTPServer,
    recorded_assets: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three real pipeline processes with their clock at +3 h, the true time, -10 min. With
    `loaded_at` compared to the clock, the two later snapshots never reached the models;
    by load sequence, every snapshot reaches facts, marts and the app's serving copy."""
    from prefect.settings import PREFECT_API_URL

    _live_env(monkeypatch, httpserver)
    base = int(time.time() * 1000) - 30 * 60_000
    stamps = iter([base, base + 5 * 60_000, base + 10 * 60_000])

    def snapshot(request: Request) -> Response:
        return Response(body_variant(recorded_assets, timestamp_ms=next(stamps)))

    httpserver.expect_request("/v3/assets").respond_with_handler(snapshot)
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    for offset in (3 * 3600, 0, -10 * 60):
        done = subprocess.run(
            [sys.executable, "-c", PIPELINE_ON_A_MOVED_CLOCK, str(offset)],
            env=env,
            cwd=Path(settings.duckdb_path).parent,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, (offset, done.stderr[-3000:])
    loaded_at = query(
        settings.duckdb_path, "select loaded_at from raw.lake_files order by load_seq"
    )
    assert loaded_at[0][0] > loaded_at[1][0] > loaded_at[2][0]  # the clock went back, twice
    checks = {
        "facts": "select count(distinct snapshot_at) from prod.facts_coins",
        "overview": "select count(*) from prod.mart_market_overview",
        "hourly": "select count(*) from prod.mart_coin_hourly where coin_id = 'bitcoin'",
    }
    for name, sql in checks.items():
        assert query(settings.duckdb_path, sql)[0][0] >= (3 if name != "hourly" else 1), name
    assert assert_warehouse_equals_lake(settings) == 3
    served = current_copy(settings.serving_dir)
    assert served is not None
    assert query(served, checks["facts"]) == [(3,)]
    latest = query(served, "select max(snapshot_at) from prod.mart_latest_ranking")[0][0]
    assert int(latest.timestamp() * 1000) // 1000 == (base + 10 * 60_000) // 1000


def _lake_file_with_rows_an_old_loader_accepted(settings: Settings, raw_body: bytes) -> str:
    """A lake file whose rows are in the warehouse although today's validation refuses one
    of them (a negative market cap): what an older release, or a rule changed since, leaves
    behind. Loaded through the warehouse's own loader, past the parser."""
    import dataclasses

    from flows.adapters.duckdb_warehouse import DuckDBWarehouse
    from flows.core.snapshot import parse_snapshot

    lake = Lake(settings.lake_url)
    body = json.loads(raw_body)
    body["data"][0]["marketCapUsd"] = "-5.0"
    written = lake.write_snapshot("replay", body["timestamp"], json.dumps(body).encode())
    snapshot = parse_snapshot(raw_body)
    poisoned = dataclasses.replace(snapshot.assets[0], market_cap_usd=-5.0)
    snapshot = dataclasses.replace(snapshot, assets=(poisoned, *snapshot.assets[1:]))
    with DuckDBWarehouse(settings.duckdb_path) as warehouse:
        warehouse.load_snapshot(lake.read_stored(written.path), "replay", snapshot)
    return written.path


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_rows_the_build_gate_refuses_are_dead_lettered_and_the_build_goes_on(
    settings: Settings,
) -> None:
    """The staging gate fails on a new file's rows: that file goes to quarantine (stage
    `build`), its rows leave the raw tables, the build runs again without them and
    publishes; the next tick is normal."""
    from flows.pipeline import pipeline

    pipeline()  # 2021-01-01
    (_, day_two) = replay_bodies(2, limit=2000)[1]
    bad = _lake_file_with_rows_an_old_loader_accepted(settings, day_two)
    state = pipeline(return_state=True)  # fetches day three, builds, meets the bad file
    assert state.is_completed(), state.message
    result = state.result()
    assert list(result.transformed.dead_lettered) == [bad]
    reason = result.transformed.dead_lettered[bad]
    assert "stg_coinsdata_rules" in reason and reason.endswith(": market_cap_not_negative")
    lake_dir = Path(settings.lake_url)
    assert not (lake_dir / bad).exists()
    assert (lake_dir / bad.replace("raw/replay/", "quarantine/replay/build/")).exists()
    rows = query(
        settings.duckdb_path,
        "select (select count(*) from raw.coincap_assets where lake_path = '" + bad + "'), "
        "(select count(*) from raw.lake_files where lake_path = '" + bad + "'), "
        "(select count(*) from ops.dead_letters where stage = 'build'), "
        "(select count(*) from prod.facts_coins where market_cap_usd < 0)",
    )
    assert rows == [(0, 0, 1, 0)]
    assert assert_warehouse_equals_lake(settings) == 2  # day one and day three
    assert pipeline(return_state=True).is_completed()  # and the next tick is ordinary
    assert assert_warehouse_equals_lake(settings) == 3


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_an_old_bad_row_never_holds_a_tick_and_the_audit_names_it(settings: Settings) -> None:
    """One row with a negative market cap, already built and published by an older release:
    ticks test only what they add, so they go on; the scheduled audit fails on it, and the
    health page says so."""
    from streamlit.testing.v1 import AppTest

    from flows.audit import audit
    from flows.pipeline import pipeline

    pipeline()
    pipeline()
    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.execute(
            "update raw.coincap_assets set market_cap_usd = -1 where id = 'bitcoin' "
            "and snapshot_at = (select min(snapshot_at) from raw.coincap_assets)"
        )
        con.execute(
            "update prod.facts_coins set market_cap_usd = -1 where coin_id = 'bitcoin' "
            "and snapshot_at = (select min(snapshot_at) from prod.facts_coins)"
        )
    for _ in range(2):
        assert pipeline(return_state=True).is_completed()  # the old row holds nothing
    state = audit(return_state=True)
    assert state.is_failed()
    assert "stg_coinsdata_rules" in str(state.message)
    app = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app" / "app.py"), default_timeout=60)
    app.switch_page("views/health.py")
    app.run()
    assert not app.exception
    errors = " ".join(e.value for e in app.error)
    assert "checks failed. They do not hold ticks" in errors


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_a_failed_build_holds_publishing_and_the_health_page_says_so(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A defect in a model (here: a test that cannot pass, added to a copy of the project):
    the build fails, the serving copy keeps the last good models, and the health page,
    which reads the serving copy, still learns of the failed build."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from flows.pipeline import pipeline

    pipeline()
    pipeline()  # two publishes: the copy the next publish writes is one tick behind
    project = tmp_path / "dbt-broken"
    shutil.copytree(PROJECT_ROOT / "dbt", project, ignore=shutil.ignore_patterns("target", "logs"))
    (project / "tests" / "always_fails.sql").write_text("select 1 as broken\n")
    monkeypatch.setenv("CRYPTOLYTICS_DBT_PROJECT_DIR", str(project))
    state = pipeline(return_state=True)
    assert state.is_failed() and "always_fails" in str(state.message)
    served = current_copy(settings.serving_dir)
    assert served is not None  # both days still served, not the copy one tick behind
    assert query(served, "select count(*) from prod.mart_market_overview") == [(2,)]
    assert query(served, "select success, failed from ops.builds order by run_at desc limit 1")[
        0
    ] == (False, "always_fails")
    st.cache_data.clear()
    app = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app" / "app.py"), default_timeout=60)
    app.switch_page("views/health.py")
    app.run()
    assert not app.exception
    assert "Publishing is held" in " ".join(e.value for e in app.error)
    st.cache_data.clear()


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_a_tick_without_its_key_never_replays_into_a_live_lake(
    settings: Settings,
    httpserver: HTTPServer,
    recorded_assets: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.pipeline import pipeline

    _live_env(monkeypatch, httpserver)
    httpserver.expect_request("/v3/assets").respond_with_data(
        body_variant(recorded_assets, timestamp_ms=int(time.time() * 1000))
    )
    assert pipeline(return_state=True).is_completed()
    before = query(settings.duckdb_path, "select count(*), min(source) from raw.coincap_assets")
    monkeypatch.setenv("CRYPTOLYTICS_COINCAP_API_KEY", "")  # the key is gone
    state = pipeline(return_state=True)
    assert state.is_failed()
    assert "holds live CoinCap data, but CRYPTOLYTICS_COINCAP_API_KEY is not set" in str(
        state.message
    )
    assert query(settings.duckdb_path, "select count(*), min(source) from raw.coincap_assets") == (
        before
    )
    assert not (Path(settings.lake_url) / "raw" / "replay").exists()


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_a_live_tick_never_writes_into_the_demo_lake(
    settings: Settings,
    httpserver: HTTPServer,
    recorded_assets: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.pipeline import pipeline

    pipeline()  # the demo: one replayed day
    _live_env(monkeypatch, httpserver)
    state = pipeline(return_state=True)
    assert state.is_failed() and "holds the replay of 2021 data" in str(state.message)
    assert len(httpserver.log) == 0  # refused before asking CoinCap anything
    assert query(settings.duckdb_path, "select distinct source from raw.coincap_assets") == [
        ("replay",)
    ]


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("flow_name", ["load", "transform"])
def test_every_flow_that_writes_waits_for_the_lock(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, flow_name: str
) -> None:
    from flows.load import load
    from flows.transform import transform
    from tests.test_locking import hold_lock_in_another_process

    monkeypatch.setenv("CRYPTOLYTICS_LOCK_TIMEOUT_SECONDS", "0.5")
    holder = hold_lock_in_another_process(settings.pipeline_lock_path, 30)
    try:
        state = {"load": load, "transform": transform}[flow_name](return_state=True)
    finally:
        holder.kill()
        holder.wait()
    assert state.is_failed() and "another pipeline run holds" in str(state.message)


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_the_key_is_nowhere_on_disk_after_hostile_runs(
    settings: Settings,
    httpserver: HTTPServer,
    recorded_assets: bytes,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Answers that echo the key (in a 400, in a 200 body) and a body whose encoding lies
    (httpx's DecodingError carried the request, headers and key, into Prefect's result
    storage): afterwards the key is in no file of the lake, quarantine, warehouse, serving
    copies, Prefect's database or result storage."""
    from prefect.settings import (
        PREFECT_LOCAL_STORAGE_PATH,
        PREFECT_RESULTS_PERSIST_BY_DEFAULT,
        get_current_settings,
        temporary_settings,
    )

    from flows.pipeline import pipeline
    from tests.helpers import files_containing

    secret = "sk-live-SECRET-90210-never-on-disk"
    _live_env(monkeypatch, httpserver, key=secret)
    monkeypatch.setenv("CRYPTOLYTICS_HTTP_MAX_ATTEMPTS", "1")
    now = int(time.time() * 1000)

    def echo_in_name(request: Request) -> Response:
        body = json.loads(body_variant(recorded_assets, timestamp_ms=now))
        body["data"][0]["name"] = request.headers["Authorization"]
        return Response(json.dumps(body))

    answers = [
        lambda r: Response(f"bad request: {dict(r.headers)}", status=400),
        lambda r: Response(b'{"data": []}', headers={"Content-Encoding": "gzip"}),
        lambda r: Response(f"<html>{dict(r.headers)}</html>"),  # a 200 to quarantine
        echo_in_name,
    ]
    for answer in answers:
        httpserver.expect_ordered_request("/v3/assets").respond_with_handler(answer)
    storage = tmp_path / "prefect-results"
    # persist every task result and failure, as a deployment with result storage would:
    # this is where httpx's DecodingError used to leave the key
    with temporary_settings(
        {PREFECT_RESULTS_PERSIST_BY_DEFAULT: True, PREFECT_LOCAL_STORAGE_PATH: storage}
    ):
        states = [pipeline(return_state=True) for _ in answers]
    assert [s.is_completed() for s in states] == [False, False, False, True]
    assert len(list(storage.iterdir())) >= len(answers)  # results written, searched below
    prefect = get_current_settings()
    url = prefect.server.database.connection_url
    url = url.get_secret_value() if hasattr(url, "get_secret_value") else str(url)
    database = Path(str(url).split("///", 1)[-1])
    roots = [tmp_path, database.parent, Path(prefect.results.local_storage_path)]
    roots = [root for root in roots if root.exists()]
    assert database.exists()
    assert files_containing(secret.encode(), roots) == []
    assert files_containing(b"[redacted]", [tmp_path / "lake"])  # the echoes were kept, redacted


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_a_warehouse_from_before_load_sequences_is_numbered_and_rebuilt_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upgrade: raw tables, manifest and fact without `load_seq` (as the last release
    left them). Opening the warehouse numbers the old files in load order, the first build
    rebuilds the models in full, and the next tick is incremental again."""
    from flows.pipeline import pipeline

    monkeypatch.setenv("CRYPTOLYTICS_ASSET_LIMIT", "300")
    for day in replay_bodies(2, limit=300):
        tick(settings, [("replay", *day)])
    with duckdb.connect(str(settings.duckdb_path)) as con:
        for table, column in [
            ("raw.coincap_assets", "load_seq"), ("raw.coincap_history", "load_seq"),
            ("raw.lake_files", "load_seq"), ("raw.lake_files", "size_bytes"),
            ("raw.lake_files", "sha256"), ("prod.facts_coins", "load_seq"),
        ]:  # fmt: skip
            con.execute(f"alter table {table} drop column {column}")
        con.execute("drop table raw.load_sequence")
    state = pipeline(return_state=True)
    assert state.is_completed(), state.message
    assert query(
        settings.duckdb_path,
        "select list(load_seq order by load_seq) from raw.lake_files",
    ) == [([1, 2, 3],)]
    assert query(
        settings.duckdb_path,
        "select count(*), count(load_seq), count(distinct (coin_id, snapshot_at)) "
        "from prod.facts_coins",
    ) == [(900, 900, 900)]
    assert assert_warehouse_equals_lake(settings) == 3
    assert pipeline(return_state=True).is_completed()
    assert assert_warehouse_equals_lake(settings) == 4


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_a_copy_of_a_snapshot_under_another_name_is_refused_by_the_gate(
    settings: Settings,
) -> None:
    """A hostile case of the lake itself: yesterday's file copied under a valid name of its
    own (a restore gone wrong). It parses, so it loads; its rows repeat keys already in the
    history, the gate's uniqueness test refuses them, and only that copy is moved aside."""
    from flows.pipeline import pipeline

    pipeline()
    lake = Path(settings.lake_url)
    (original,) = lake.glob("raw/replay/assets/date=*/*.json.gz")
    copy = original.with_name(f"{int(original.name.split('.')[0]) + 1}.json.gz")
    shutil.copyfile(original, copy)
    state = pipeline(return_state=True)
    assert state.is_completed(), state.message
    moved = state.result().transformed.dead_lettered
    assert list(moved) == [str(copy.relative_to(lake))]
    assert moved[str(copy.relative_to(lake))].endswith(": duplicate_coin_id_snapshot_at")
    assert original.exists() and not copy.exists()
    assert assert_warehouse_equals_lake(settings) == 2
