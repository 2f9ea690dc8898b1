"""The cloud target end to end, offline: the real `pipeline` flow on replay data with the lake
on a GCS emulator, load jobs into a BigQuery emulator and dbt-bigquery building the same
models there. Same flows, same dbt project; only CRYPTOLYTICS_TARGET and the endpoints
differ. (bqemulator drops partitioning and clustering: test_bigquery.py checks the table
definitions and the generated DDL instead.)"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

import gcsfs
import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flows.core.settings import Settings
from flows.load import load
from flows.pipeline import pipeline
from testkit.emulators import job_log
from testkit.scans import GROWING, table_reads
from tests.conftest import FIXTURES, Emulator, body_variant
from tests.helpers import assert_app_stands_alone
from tests.test_pipeline_flow import replay_day_sizes

pytestmark = [pytest.mark.e2e, pytest.mark.prefect, pytest.mark.usefixtures("prefect_server")]

PROJECT = "cryptolytics-test"
ASSETS = 300


@pytest.fixture
def cloud(
    settings: Settings,
    gcs_emulator: Emulator,
    bigquery_emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
) -> bigquery.Client:
    bucket, suffix = f"lake-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex[:8]
    gcsfs.GCSFileSystem(endpoint_url=gcs_emulator.url, token="anon").mkdir(bucket)
    for key, value in {
        "CRYPTOLYTICS_TARGET": "cloud",
        "CRYPTOLYTICS_LAKE_URL": f"gs://{bucket}/lake",
        "CRYPTOLYTICS_GCP_PROJECT": PROJECT,
        "CRYPTOLYTICS_GCS_ENDPOINT_URL": gcs_emulator.url,
        "CRYPTOLYTICS_BIGQUERY_API_ENDPOINT": bigquery_emulator.url,
        "CRYPTOLYTICS_BIGQUERY_STAGING_DATASET": f"stg_coins_{suffix}",
        "CRYPTOLYTICS_BIGQUERY_PROD_DATASET": f"prod_coins_{suffix}",
        "CRYPTOLYTICS_ASSET_LIMIT": str(ASSETS),
    }.items():
        monkeypatch.setenv(key, value)
    return bigquery.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=bigquery_emulator.url),
    )


def one(client: bigquery.Client, sql: str) -> tuple:
    (row,) = client.query(sql).result()
    return tuple(row.values())


def test_the_pipeline_runs_on_gcs_and_bigquery(cloud: bigquery.Client) -> None:
    settings = Settings()
    stg, prod = settings.bigquery_staging_dataset, settings.bigquery_prod_dataset
    first = pipeline()
    second = pipeline()

    sizes = [min(ASSETS, n) for n in replay_day_sizes(2)]
    assert (first.loaded.rows_loaded, second.loaded.rows_loaded) == tuple(sizes)
    assert first.transformed.models_built == 11  # every model, then what a replay day reaches
    assert second.transformed.models_built == 7
    assert first.transformed.tests_passed == 16 and second.transformed.tests_passed == 13
    lake = gcsfs.GCSFileSystem(endpoint_url=settings.gcs_endpoint_url, token="anon")
    bucket = settings.lake_url.removeprefix("gs://")
    assert len(lake.glob(f"{bucket}/raw/replay/assets/date=*/*.json.gz")) == 2

    raw = one(cloud, f"select count(*), count(distinct lake_path) from {stg}.coincap_assets")
    assert raw == (sum(sizes), 2)
    assert one(cloud, f"select count(*) from {stg}.lake_files") == (2,)
    facts = one(
        cloud,
        f"select count(*), count(distinct concat(coin_id, '@', cast(snapshot_at as string))),"
        f" count(distinct snapshot_at) from {prod}.facts_coins",
    )
    assert facts == (sum(sizes), sum(sizes), 2)  # exact, no duplicate
    assert one(cloud, f"select count(*) from {prod}.mart_market_overview") == (2,)
    assert one(cloud, f"select count(*) from {prod}.mart_latest_ranking") == (sizes[1],)
    assert one(cloud, f"select count(*) from {prod}.mart_coin_daily") == (sum(sizes),)
    statuses = one(cloud, f"select count(*), countif(status not in ('pass', 'success')) "
                          f"from {prod}.ops_dbt_results")  # fmt: skip
    assert statuses == (7 + 13, 0)  # the second build's nodes, every one passed
    assert second.report.facts_rows == sum(sizes)

    again = load()  # a rerun finds nothing new: nothing loaded twice
    assert (again.files_loaded, again.files_already_loaded) == (0, 2)
    assert one(cloud, f"select count(*) from {stg}.coincap_assets") == (sum(sizes),)

    # the app's data module, unchanged, reads the marts through the cloud target's reader
    import streamlit as st

    from streamlit_app import data
    from testkit.pages import page_queries

    st.cache_data.clear()
    try:
        assert data.has_data()
        assert data.data_source()["latest_source"] == "replay"
        assert data.data_source()["replay_snapshots"] == 2
        ranking = data.ranking("", 2000, 0.0, "Rank")
        assert len(ranking) == sizes[1] and ranking["rank"].is_monotonic_increasing
        assert len(data.ranking("bit", 2000, 0.0, "24h %")) >= 1  # bound LIKE pattern
        assert len(data.coin_series("bitcoin", "ALL")) == 2  # one daily close per replay day
        health = data.pipeline_health()
        model_rows = health["model_rows"].set_index("model")["row_count"]
        assert model_rows["prod.facts_coins"] == sum(sizes)
        assert model_rows["raw.lake_files"] == 2
        assert set(health["dbt_results"]["status"]) == {"pass", "success"}
        assert health["gaps"].empty  # replay days are not gaps in the live feed
        for run in page_queries().values():
            run()  # every page's queries run on BigQuery
    finally:
        st.cache_data.clear()
    assert_app_stands_alone()  # and without Prefect or the pipeline's credentials


def test_on_the_cloud_target_the_api_key_comes_from_its_secret_block(
    cloud: bigquery.Client,
    httpserver: HTTPServer,
    recorded_assets: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker with no key in its environment: the flow loads the Secret block that
    `make blocks` saved and takes a live snapshot with it."""
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client

    from flows.core.settings import COINCAP_API_KEY_BLOCK as COINCAP_API_KEY

    secret = "sk-from-the-block-7"
    Secret(value=secret).save(COINCAP_API_KEY, overwrite=True)
    monkeypatch.setenv("CRYPTOLYTICS_SOURCE", "coincap")
    monkeypatch.setenv("CRYPTOLYTICS_COINCAP_BASE_URL", httpserver.url_for("/v3"))
    body = body_variant(recorded_assets, timestamp_ms=int(time.time() * 1000))
    httpserver.expect_ordered_request(
        "/v3/assets", headers={"Authorization": f"Bearer {secret}"}
    ).respond_with_data(body)
    try:
        assert Settings().coincap_api_key is None  # nothing in the environment
        result = pipeline()
    finally:
        with get_client(sync_client=True) as client:  # other tests replay
            block = client.read_block_document_by_name(COINCAP_API_KEY, "secret")
            client.delete_block_document(block.id)
    httpserver.check_assertions()
    assert (result.extracted.source, result.loaded.rows_loaded) == ("coincap", 100)
    prod = Settings().bigquery_prod_dataset
    assert one(cloud, f"select count(*), min(source) from {prod}.facts_coins") == (100, "coincap")


RATES_EXAMPLE = FIXTURES / "coincap" / "v2_rates_2018-08-06.json"


def test_a_live_tick_reads_only_the_recent_partitions_of_growing_tables(
    cloud: bigquery.Client,
    bigquery_emulator: Emulator,
    httpserver: HTTPServer,
    recorded_assets: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """BigQuery bills every statement by the partitions it cannot skip, 288 ticks a day. So
    every statement of a live tick (`/assets` and `/rates`, as the schedule runs it) that
    reads columns of a table growing with each snapshot has a constant filter on its
    partition column: its cost stays flat as history grows (bench/bigquery_cost.py prices
    them). The first build reads whole tables; the audit does too, once a day."""
    monkeypatch.setenv("CRYPTOLYTICS_SOURCE", "coincap")
    monkeypatch.setenv("CRYPTOLYTICS_COINCAP_BASE_URL", httpserver.url_for("/v3"))
    monkeypatch.setenv("CRYPTOLYTICS_COINCAP_API_KEY", "test-key-not-a-secret")
    monkeypatch.setenv("CRYPTOLYTICS_FETCH_RATES", "true")

    def stamped(body: bytes) -> Callable[[Request], Response]:
        def answer(request: Request) -> Response:  # taken now, as a live answer is
            document = json.loads(body)
            document["timestamp"] = int(time.time() * 1000)
            return Response(json.dumps(document))

        return answer

    httpserver.expect_request("/v3/assets").respond_with_handler(stamped(recorded_assets))
    rates = RATES_EXAMPLE.read_bytes()
    httpserver.expect_request("/v3/rates").respond_with_handler(stamped(rates))
    pipeline()  # the first build: every model, from whole tables
    before = len(job_log(bigquery_emulator))
    tick = pipeline()
    assert tick.loaded.files_loaded == 2  # a snapshot and a /rates answer
    statements = [sql for sql, _ in job_log(bigquery_emulator)[before:]]
    reads = [(read, sql) for sql in statements for read in table_reads(sql, GROWING)]
    assert {read.table for read, _ in reads} >= {"facts_coins", "mart_coin_hourly", "stg_coinsdata"}
    whole = [
        f"{read.table} ({read.kind}): {' '.join(sql.split())[:400]}"
        for read, sql in reads
        if read.columns and read.bound is None
    ]
    assert not whole, "statements of a tick that read a growing table whole:\n" + "\n".join(whole)
