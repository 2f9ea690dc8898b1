"""The Prefect flows end to end on a real (test-harness) Prefect server and real parts."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import duckdb
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from pytest_httpserver import HTTPServer

from flows.core.settings import PROJECT_ROOT, Settings
from flows.pipeline import pipeline
from flows.replay.dataset import ReplayDataset
from tests.conftest import body_variant

pytestmark = [
    pytest.mark.integration,
    pytest.mark.prefect,
    pytest.mark.usefixtures("prefect_server"),
]


SNAPSHOT_COUNTS = "select count(*), count(distinct snapshot_at) from prod.facts_coins"


def facts(settings: Settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return con.execute(sql).fetchall()


def replay_day_sizes(days: int) -> list[int]:
    dataset = ReplayDataset()
    try:
        return [len(dataset.assets(day, limit=2000)) for day in dataset.days[:days]]
    finally:
        dataset.close()


def artifacts_of(flow_run_id: object) -> dict[str, str]:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: str(a.data) for a in artifacts}


def test_replay_ticks_grow_history_one_day_per_run(settings: Settings) -> None:
    first = pipeline()
    second = pipeline()

    day_sizes = replay_day_sizes(2)
    assert first.extracted.source == second.extracted.source == "replay"
    assert first.extracted.snapshot_at == "2021-01-01T00:00:00+00:00"
    assert second.extracted.snapshot_at == "2021-01-02T00:00:00+00:00"
    assert (first.loaded.rows_loaded, second.loaded.rows_loaded) == tuple(day_sizes)
    assert facts(
        settings,
        "select count(*), count(distinct snapshot_at), min(source), max(source) "
        "from prod.facts_coins",
    ) == [(sum(day_sizes), 2, "replay", "replay")]
    assert facts(
        settings,
        "select count(*) from (select coin_id, snapshot_at from prod.facts_coins "
        "group by all having count(*) > 1)",
    ) == [(0,)]
    assert second.report.facts_rows == sum(day_sizes)
    models = len(list((PROJECT_ROOT / "dbt" / "models").rglob("*.sql")))
    assert first.transformed.models_built == models  # the first build: every model
    # then what a replay day reaches: not the three views, nor the rates path (no /rates)
    assert second.transformed.models_built == models - 4
    assert first.transformed.tests_passed == 16 and second.transformed.tests_passed == 13
    # 24h change exists from day two on, from our own history
    assert facts(settings, "select count(change_24h_pct) > 1000 from prod.mart_latest_ranking") == [
        (True,)
    ]
    assert len(second.report.gainers) == 5


def test_runs_publish_a_summary_and_top_movers(settings: Settings) -> None:
    first = pipeline(return_state=True)
    state = pipeline(return_state=True)
    artifacts = artifacts_of(state.state_details.flow_run_id)
    whole_build = artifacts_of(first.state_details.flow_run_id)["dbt-results"]

    assert set(artifacts) == {"pipeline-summary", "top-movers", "dbt-results"}
    assert "**Replay**" in artifacts["pipeline-summary"]
    # the dbt run as Prefect shows it, one table: the first build's every model and data
    # test, a later tick's the ones its rows reach
    for model in (PROJECT_ROOT / "dbt" / "models").rglob("*.sql"):
        assert f'"{model.stem}"' in whole_build
    assert '"facts_coins"' in artifacts["dbt-results"]
    assert '"stg_coinsdata"' not in artifacts["dbt-results"]  # a view: defined once
    assert '"test"' in artifacts["dbt-results"] and '"unit_test"' not in artifacts["dbt-results"]
    assert "2021-01-02T00:00:00+00:00" in artifacts["pipeline-summary"]
    assert "gainer" in artifacts["top-movers"] and "loser" in artifacts["top-movers"]


def run_log(flow_run_id: object, containing: str = "", wait_seconds: float = 15) -> list[str]:
    """The flow run's log lines as the Prefect UI shows them. Prefect ships logs to its API
    in batches after the run may have ended: with `containing`, wait for a line with it."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + wait_seconds
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
        lines = [log.message for log in logs]
        if not containing or any(containing in line for line in lines):
            return lines
        if time.monotonic() > deadline:
            return lines
        time.sleep(0.5)


@pytest.fixture
def live_api(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> HTTPServer:
    """Live mode (source `coincap`, a key) against an HTTP server on 127.0.0.1."""
    monkeypatch.setenv("CRYPTOLYTICS_SOURCE", "coincap")
    monkeypatch.setenv("CRYPTOLYTICS_COINCAP_API_KEY", "test-key")
    monkeypatch.setenv("CRYPTOLYTICS_COINCAP_BASE_URL", httpserver.url_for("/v3"))
    return httpserver


def now_ms() -> int:
    return int(time.time() * 1000)


def _first_asset(raw: bytes, **fields: object) -> bytes:
    body = json.loads(raw)
    body["data"][0].update(fields)
    return json.dumps(body).encode()


HOUR_MS = 3_600_000
# Hostile responses are in tests/test_hostile_corpus.py (tests/fixtures/hostile/).


def test_unknown_fields_are_kept_in_the_lake_and_ignored_downstream(
    settings: Settings,
    live_api: HTTPServer,
    recorded_assets: bytes,
    tmp_path: Path,
) -> None:
    """Schema drift: CoinCap adding a field, or a unicode name, must not stop ingestion."""
    drifted = _first_asset(
        body_variant(recorded_assets, timestamp_ms=now_ms()),
        tokenomics={"unlocks": [1, 2]},
        name="Bítcoin ₿ 比特币",
    )
    live_api.expect_ordered_request("/v3/assets").respond_with_data(drifted)
    assert pipeline(return_state=True).is_completed()
    stored = list((tmp_path / "lake" / "raw" / "coincap").rglob("*.json.gz"))
    assert len(stored) == 1 and b'"tokenomics"' in gzip.decompress(stored[0].read_bytes())
    assert facts(settings, "select name from prod.facts_coins where coin_id = 'bitcoin'") == [
        ("Bítcoin ₿ 比特币",)
    ]
    assert facts(settings, "select count(*) from prod.facts_coins") == [(100,)]


def test_a_bad_live_body_is_quarantined_and_fails_the_run(
    settings: Settings,
    live_api: HTTPServer,
    recorded_assets: bytes,
    tmp_path: Path,
) -> None:
    good = body_variant(recorded_assets, timestamp_ms=now_ms())
    live_api.expect_ordered_request("/v3/assets").respond_with_data(good)
    pipeline()
    before = facts(settings, "select count(*) from prod.facts_coins")

    bad = good.replace(b'"timestamp": ', b'"timestamp": "', 1)  # not JSON any more
    live_api.expect_ordered_request("/v3/assets").respond_with_data(bad)
    state = pipeline(return_state=True)

    assert state.is_failed()
    assert "body is not JSON" in str(state.message) + str(state.result(raise_on_failure=False))
    quarantined = list((tmp_path / "lake" / "quarantine" / "coincap").rglob("*.json.gz"))
    assert len(quarantined) == 1
    assert facts(settings, "select count(*) from prod.facts_coins") == before == [(100,)]


def test_the_api_key_never_reaches_logs_artifacts_or_parameters(
    settings: Settings,
    httpserver: HTTPServer,
    recorded_assets: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.client.schemas.filters import LogFilter

    secret = "sk-test-SECRET-4242-do-not-log"
    monkeypatch.setenv("CRYPTOLYTICS_SOURCE", "coincap")
    monkeypatch.setenv("CRYPTOLYTICS_COINCAP_API_KEY", secret)
    monkeypatch.setenv("CRYPTOLYTICS_COINCAP_BASE_URL", httpserver.url_for("/v3"))
    httpserver.expect_ordered_request(
        "/v3/assets", headers={"Authorization": f"Bearer {secret}"}
    ).respond_with_data(body_variant(recorded_assets, timestamp_ms=now_ms()))
    httpserver.expect_ordered_request("/v3/assets").respond_with_data("nope", status=401)
    ok = pipeline(return_state=True)
    refused = pipeline(return_state=True)  # a bad key: the error says what to do, not the key
    assert ok.is_completed() and refused.is_failed()

    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter())
        artifacts = client.read_artifacts()
        runs = client.read_flow_runs()
    assert logs and artifacts and runs
    seen = " ".join(
        [log.message for log in logs]
        + [str(a.data) for a in artifacts]
        + [str(run.parameters) for run in runs]
        + [str(refused.message), str(refused.result(raise_on_failure=False))]
    )
    assert "CRYPTOLYTICS_COINCAP_API_KEY" in seen  # the 401 message was logged...
    assert secret not in seen  # ...without the key itself


def test_an_identical_snapshot_is_taken_once(
    settings: Settings, live_api: HTTPServer, recorded_assets: bytes
) -> None:
    """CoinCap answering twice with the same snapshot (its cache did not move on): the second
    run completes, says so, and adds nothing."""
    body = body_variant(recorded_assets, timestamp_ms=now_ms())
    live_api.expect_ordered_request("/v3/assets").respond_with_data(body)
    live_api.expect_ordered_request("/v3/assets").respond_with_data(body)
    first = pipeline()
    again = pipeline(return_state=True)
    assert again.is_completed()
    assert first.extracted.created and not again.result().extracted.created
    assert again.result().loaded.rows_loaded == 0
    nothing_new = "already in the lake, nothing new"
    assert any(
        nothing_new in line for line in run_log(again.state_details.flow_run_id, nothing_new)
    )
    assert facts(settings, SNAPSHOT_COUNTS) == [(100, 1)]


def test_after_an_outage_runs_catch_up_and_health_shows_the_gap(
    settings: Settings,
    live_api: HTTPServer,
    recorded_assets: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Six hours without CoinCap: the runs in between fail (nothing written), the next ones
    load normally, and the health page lists the hole instead of bridging it."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from streamlit_app import data

    monkeypatch.setenv("CRYPTOLYTICS_HTTP_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("CRYPTOLYTICS_HTTP_BACKOFF_SECONDS", "0.01")
    start = now_ms() - 6 * HOUR_MS + 15 * 60_000  # a live snapshot may lag up to 6 h
    before_outage = [start, start + 5 * 60_000]
    after_outage = [now_ms() - 5 * 60_000, now_ms()]
    for timestamp in before_outage:
        body = body_variant(recorded_assets, timestamp_ms=timestamp)
        live_api.expect_ordered_request("/v3/assets").respond_with_data(body)
    for _ in range(3):  # each failed run asks twice
        for _ in range(2):
            live_api.expect_ordered_request("/v3/assets").respond_with_data("down", status=503)
    for timestamp in after_outage:
        body = body_variant(recorded_assets, timestamp_ms=timestamp)
        live_api.expect_ordered_request("/v3/assets").respond_with_data(body)

    states = [pipeline(return_state=True) for _ in range(7)]
    assert [s.type.value for s in states] == ["COMPLETED"] * 2 + ["FAILED"] * 3 + ["COMPLETED"] * 2
    assert "503" in str(states[2].message)
    live_api.check_assertions()
    assert facts(settings, SNAPSHOT_COUNTS) == [(400, 4)]

    st.cache_data.clear()
    gaps = data.pipeline_health()["gaps"]
    assert len(gaps) == 1
    expected_minutes = round((after_outage[0] - before_outage[1]) / 60_000)
    assert gaps["minutes_missing"].iat[0] == expected_minutes  # about 5.5 h, as taken
    app = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app" / "app.py"), default_timeout=60)
    app.switch_page("views/health.py")
    app.run()
    assert not app.exception
    warnings = " ".join(w.value for w in app.warning)
    assert f"1 gap(s) in the last 30 days, the longest {expected_minutes / 60:.1f} h" in warnings
    st.cache_data.clear()


def test_a_tick_builds_only_what_its_new_rows_reach_and_a_changed_project_builds_all(
    settings: Settings,
) -> None:
    """The first tick builds every node and records the project it built. A replay tick
    (new `/assets` rows, no rates, no history) then rebuilds only the tables downstream of
    `/assets` and runs their tests, the gate's among them, and leaves the views and the rates
    path alone, and its facts still grow. A project other than the one last built whole (a
    release) builds every node again."""
    first = pipeline()
    whole = facts(settings, "select node from ops.dbt_results")
    (recorded,) = facts(settings, "select whole_project from ops.builds")[0]
    second = pipeline()
    selected = {node for (node,) in facts(settings, "select node from ops.dbt_results")}
    builds = facts(settings, "select whole_project from ops.builds order by run_at")

    assert recorded and len(builds) == 2 and builds[1] == (None,)  # a selection: no project
    assert {"stg_coinsdata", "stg_coincap_rates", "mart_fiat_rates_hourly"} <= {
        node for (node,) in whole
    }
    assert not selected & {"stg_coinsdata", "stg_coin_history", "stg_coincap_rates"}  # views
    assert not selected & {"mart_fiat_rates_hourly", "stg_coincap_rates_rules"}  # no rates
    assert {"stg_coinsdata_rules", "facts_coins", "mart_coin_hourly", "dim_coins"} <= selected
    assert second.transformed.models_built < first.transformed.models_built
    assert facts(settings, SNAPSHOT_COUNTS)[0][1] == 2

    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.execute("update ops.builds set whole_project = 'an older release'")
    pipeline()
    rebuilt = {node for (node,) in facts(settings, "select node from ops.dbt_results")}
    assert rebuilt == {node for (node,) in whole}
    assert facts(settings, "select whole_project from ops.builds order by run_at desc limit 1")[
        0
    ] == (recorded,)
