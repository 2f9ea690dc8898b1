"""The Prefect flows end to end on a real (test-harness) Prefect server and real parts."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from pytest_httpserver import HTTPServer

from flows.pipeline import pipeline
from flows.replay.dataset import ReplayDataset
from flows.settings import PROJECT_ROOT, Settings
from tests.conftest import body_variant

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_server")]


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
    assert second.transformed.models_built == models
    assert second.transformed.tests_passed > 20
    # 24h change exists from day two on, from our own history
    assert facts(settings, "select count(change_24h_pct) > 1000 from prod.mart_latest_ranking") == [
        (True,)
    ]
    assert len(second.report.gainers) == 5


def test_runs_publish_a_summary_and_top_movers(settings: Settings) -> None:
    pipeline()
    state = pipeline(return_state=True)
    artifacts = artifacts_of(state.state_details.flow_run_id)

    assert set(artifacts) == {"pipeline-summary", "top-movers", "dbt-results"}
    assert "**Replay**" in artifacts["pipeline-summary"]
    # the dbt run as Prefect shows it: every model and data test, one table
    for model in (PROJECT_ROOT / "dbt" / "models").rglob("*.sql"):
        assert f'"{model.stem}"' in artifacts["dbt-results"]
    assert '"test"' in artifacts["dbt-results"] and '"unit_test"' not in artifacts["dbt-results"]
    assert "2021-01-02T00:00:00+00:00" in artifacts["pipeline-summary"]
    assert "gainer" in artifacts["top-movers"] and "loser" in artifacts["top-movers"]


def test_a_bad_live_body_is_quarantined_and_fails_the_run(
    settings: Settings,
    httpserver: HTTPServer,
    recorded_assets: bytes,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("CRYPTOLYTICS_SOURCE", "coincap")
    monkeypatch.setenv("CRYPTOLYTICS_COINCAP_API_KEY", "test-key")
    monkeypatch.setenv("CRYPTOLYTICS_COINCAP_BASE_URL", httpserver.url_for("/v3"))
    good = body_variant(recorded_assets, timestamp_ms=1742150071411)
    httpserver.expect_ordered_request("/v3/assets").respond_with_data(good)
    pipeline()
    before = facts(settings, "select count(*) from prod.facts_coins")

    bad = good.replace(b'"priceUsd": "84022', b'"priceUsd": "abc84022', 1)
    httpserver.expect_ordered_request("/v3/assets").respond_with_data(bad)
    state = pipeline(return_state=True)

    assert state.is_failed()
    assert "asset 'bitcoin' `priceUsd` is not a number" in str(state.message) + str(
        state.result(raise_on_failure=False)
    )
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
    ).respond_with_data(recorded_assets)
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
