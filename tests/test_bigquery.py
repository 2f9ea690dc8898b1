"""The BigQuery warehouse on emulators: real google-cloud-bigquery and gcsfs clients against
bqemulator and fake-gcs-server on 127.0.0.1. Exactly-once loading from gs:// with load jobs,
a crash between load and manifest repaired without duplicates. The emulator drops
partitioning and clustering, so the table definitions we send are checked as values."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import gcsfs
import pytest
import sqlglot
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from flows.adapters.bigquery import (
    ASSETS,
    HISTORY,
    RATES,
    BigQueryDatasets,
    load_job_id,
    table_definition,
)
from flows.adapters.lake import Lake
from flows.core.loading import load_pending
from flows.core.settings import Settings
from testkit.scans import GROWING
from tests.conftest import FIXTURES, RECORDED_TIMESTAMP, Emulator, body_variant

pytestmark = pytest.mark.e2e

LOCATION = "europe-west6"


@pytest.fixture
def lake(gcs_emulator: Emulator) -> Lake:
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    gcsfs.GCSFileSystem(endpoint_url=gcs_emulator.url, token="anon").mkdir(bucket)
    return Lake(f"gs://{bucket}/lake", endpoint_url=gcs_emulator.url, token="anon")


@pytest.fixture
def warehouse(bigquery_emulator: Emulator, lake: Lake) -> Iterator[BigQueryDatasets]:
    client = bigquery.Client(
        project="cryptolytics-test",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=bigquery_emulator.url),
        location=LOCATION,
    )
    suffix = uuid.uuid4().hex[:8]
    with BigQueryDatasets(
        client, lake, raw_dataset=f"stg_{suffix}", prod_dataset=f"prod_{suffix}", location=LOCATION
    ) as warehouse:
        yield warehouse


def counts(warehouse: BigQueryDatasets) -> tuple[int, int, int]:
    (row,) = warehouse._query(
        f"select count(*) as n, count(distinct concat(id, '@', cast(snapshot_at as string))) as d,"
        f" (select count(*) from `{warehouse.raw}.lake_files`) as files"
        f" from `{warehouse.raw}.coincap_assets`"
    )
    return row.n, row.d, row.files


def land(lake: Lake, recorded_assets: bytes, minutes: list[int]) -> None:
    for offset in minutes:
        ts = RECORDED_TIMESTAMP + offset * 60_000
        lake.write_snapshot("coincap", ts, body_variant(recorded_assets, timestamp_ms=ts))


def test_load_jobs_from_gcs_load_each_file_exactly_once(
    warehouse: BigQueryDatasets, lake: Lake, recorded_assets: bytes
) -> None:
    land(lake, recorded_assets, [0, 5, 10])
    first = load_pending(lake, warehouse)
    again = load_pending(lake, warehouse)
    assert (first.files_loaded, first.rows_loaded) == (3, 300)
    assert (again.files_loaded, again.files_already_loaded) == (0, 3)
    assert counts(warehouse) == (300, 300, 3)
    staged = lake.fs.glob(f"{lake.root}/staged/**/*.ndjson.gz")
    assert len(staged) == 3  # what the load jobs read, beside the lake
    assert all(lake.fs.cat_file(path)[:2] == b"\x1f\x8b" for path in staged)  # gzip

    land(lake, recorded_assets, [15])
    assert load_pending(lake, warehouse).rows_loaded == 100
    assert counts(warehouse) == (400, 400, 4)


def test_a_crash_between_load_job_and_manifest_is_repaired_without_duplicates(
    warehouse: BigQueryDatasets, lake: Lake, recorded_assets: bytes
) -> None:
    land(lake, recorded_assets, [0, 5])
    load_pending(lake, warehouse)
    # the state a run leaves when it dies after the load job, before the manifest merge
    warehouse._query(
        f"delete from `{warehouse.raw}.lake_files` where lake_path = @p",
        p=lake.list_snapshots()[1],
    )
    assert counts(warehouse) == (200, 200, 1)
    repaired = load_pending(lake, warehouse)
    assert repaired.files_loaded == 1
    assert counts(warehouse) == (200, 200, 2)  # the rows were there: only the manifest added


def test_a_repaired_file_numbered_after_a_later_one_gets_a_new_load_sequence(
    warehouse: BigQueryDatasets, lake: Lake, recorded_assets: bytes
) -> None:
    """A run dies between a late file's load job and its manifest entry, and the next run
    cannot read that file but loads a newer one: the newer one is numbered past the dead
    run's rows, and a model's watermark with it. When the late file is repaired, its rows
    take a number above every other, so the models still read them (a build's recent span
    knows a file's time only from its manifest entry)."""
    land(lake, recorded_assets, [0, -3 * 24 * 60])  # a snapshot, then a late one
    load_pending(lake, warehouse)
    late = next(p for p in lake.list_snapshots() if "2025-03-13" in p)
    warehouse._query(f"delete from `{warehouse.raw}.lake_files` where lake_path = @p", p=late)
    aside = f"{lake.root}/aside.json.gz"
    lake.fs.mv(f"{lake.root}/{late}", aside)  # unreadable for this run
    land(lake, recorded_assets, [5])
    assert load_pending(lake, warehouse).files_loaded == 1
    lake.fs.mv(aside, f"{lake.root}/{late}")
    assert load_pending(lake, warehouse).files_loaded == 1  # repaired: the rows were there

    def seqs(where: str) -> list[int]:
        rows = warehouse._query(
            f"select distinct load_seq from `{warehouse.raw}.coincap_assets` where {where}"
        )
        return sorted(row.load_seq for row in rows)

    newer = max(seqs(f"lake_path != '{late}'"))
    (repaired,) = seqs(f"lake_path = '{late}'")
    assert repaired > newer
    (entry,) = warehouse._query(
        f"select load_seq from `{warehouse.raw}.lake_files` where lake_path = @p", p=late
    )
    assert entry.load_seq == repaired
    assert counts(warehouse) == (300, 300, 3)


def test_tables_are_partitioned_by_time_and_clustered_by_coin() -> None:
    assets = table_definition("p.d.coincap_assets", ASSETS)
    assert (assets.time_partitioning.type_, assets.time_partitioning.field) == (
        "DAY",
        "snapshot_at",
    )
    assert assets.clustering_fields == ["id"]
    history = table_definition("p.d.coincap_history", HISTORY)
    assert (history.time_partitioning.type_, history.clustering_fields) == ("MONTH", ["coin_id"])
    rates = table_definition("p.d.coincap_rates", RATES)  # read every tick: a day, not a month
    assert (rates.time_partitioning.type_, rates.time_partitioning.field) == ("DAY", "rates_at")


def test_load_job_ids_are_deterministic_per_file() -> None:
    path = "raw/coincap/assets/date=2025-03-16/1742150071411.json.gz"
    assert load_job_id("coincap_assets", path, 7) == load_job_id("coincap_assets", path, 7)
    assert load_job_id("coincap_assets", path, 7) != load_job_id("coincap_assets", path + "x", 7)
    assert load_job_id("coincap_assets", path, 7) != load_job_id("coincap_assets", path, 8)


@pytest.mark.parametrize("target", ["cloud_emulator", "local"])
def test_facts_coins_is_partitioned_clustered_and_merged_within_its_batch_on_bigquery(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator drops partitioning, so check what dbt would send: the parsed config."""
    from dbt.cli.main import dbtRunner

    from flows.core.settings import PROJECT_ROOT

    monkeypatch.setenv("DO_NOT_TRACK", "1")
    project = str(PROJECT_ROOT / "dbt")
    result = dbtRunner().invoke(
        ["parse", "--target", target, "--project-dir", project, "--profiles-dir", project,
         "--target-path", str(PROJECT_ROOT / "dbt" / "target" / f"parse-{target}"), "--quiet"]
    )  # fmt: skip
    assert result.success, result.exception
    config = result.result.nodes["model.cryptolytics.facts_coins"].config.to_dict()
    layout = [config.get(key) for key in ("partition_by", "cluster_by", "incremental_predicates")]
    if target == "local":
        assert layout == [None, None, None]
        assert config["incremental_strategy"] == "append"
        return
    assert config["incremental_strategy"] == "merge"
    assert config["unique_key"] == ["coin_id", "snapshot_at"]
    assert config["partition_by"] == {
        "field": "snapshot_at", "data_type": "timestamp", "granularity": "day",
    }  # fmt: skip
    assert config["cluster_by"] == ["coin_id"]
    # the batch's earliest snapshot, a literal when the merge runs (dbt/macros/dialect.sql):
    # test_cloud_target.py checks that the merge dbt sends reads recent partitions only
    assert config["incremental_predicates"] == [
        "DBT_INTERNAL_DEST.snapshot_at >= __batch_start__(snapshot_at)"
    ]
    # every growing model as the partition-filter check and the cost model take it to be
    models = {n.name: n.config.to_dict() for n in result.result.nodes.values()}
    for name, layout in GROWING.items():
        if name in models and models[name]["materialized"] == "incremental":
            assert models[name]["partition_by"] == {
                "field": layout.time_column, "data_type": "timestamp",
                "granularity": layout.granularity,
            }, name  # fmt: skip
            assert models[name]["incremental_predicates"] == [
                f"DBT_INTERNAL_DEST.{layout.time_column} >= __batch_start__({layout.time_column})"
            ], name


def test_every_app_query_translates_to_bigquery_sql(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bqemulator runs DuckDB underneath and accepts some DuckDB-only SQL that BigQuery
    rejects, so the app's statements (captured from every page on a local warehouse) are
    checked here for what BigQuery lacks."""
    import streamlit as st

    from flows.adapters.bigquery import to_bigquery_sql
    from flows.adapters.serving import ServingReader
    from testkit.pages import page_queries
    from testkit.pipeline import replay_bodies, tick

    tick(Settings(), [("replay", ts, body) for ts, body in replay_bodies(2, limit=50)])
    seen: list[str] = []
    query = ServingReader.query

    def recording(self: ServingReader, sql: str, params: dict | None = None) -> object:
        seen.append(sql)
        return query(self, sql, params)

    monkeypatch.setattr(ServingReader, "query", recording)
    st.cache_data.clear()
    try:
        for run in page_queries().values():
            run()
    finally:
        st.cache_data.clear()
    assert len(set(seen)) >= 15

    duckdb_only = ("FILTER(", " ESCAPE ", "TO_DAYS", "TO_MINUTES", "EPOCH(", "ARG_MAX", "::")
    for sql in set(seen):
        translated = to_bigquery_sql(sql, "cryptolytics-test.prod_coins_dataset")
        assert not [word for word in duckdb_only if word in translated.upper()], translated
        tables = [t.sql("bigquery") for t in sqlglot.parse_one(translated, read="bigquery")
                  .find_all(sqlglot.exp.Table) if t.db]  # fmt: skip
        assert all(t.startswith("`cryptolytics-test`.prod_coins_dataset.") for t in tables), tables


def test_history_windows_load_once_across_their_partitions(
    warehouse: BigQueryDatasets, lake: Lake
) -> None:
    """A real recorded month of hourly bitcoin history (720 points over two monthly
    partitions), loaded twice: once."""
    from flows.core.lake_layout import HistoryKey

    raw = (FIXTURES / "coincap" / "v2_bitcoin_history_h1_2023-03-03.json").read_bytes()
    key = HistoryKey("coincap", "h1", "bitcoin", 1675263600000, 1677852000001)
    lake.write_history(key, raw)
    first = load_pending(lake, warehouse)
    again = load_pending(lake, warehouse)
    assert (first.files_loaded, first.rows_loaded, again.files_loaded) == (1, 720, 0)
    (row,) = warehouse._query(
        f"select count(*) as n, count(distinct point_at) as d, min(interval) as i "
        f"from `{warehouse.raw}.coincap_history`"
    )
    assert (row.n, row.d, row.i) == (720, 720, "h1")


def test_rates_load_once_and_a_bad_rate_is_left_out(
    warehouse: BigQueryDatasets, lake: Lake
) -> None:
    """CoinCap's example `/rates` body at two ticks, the second with a rate the gate refuses,
    loaded twice: each file once, the refused rate out, EUR's value as CoinCap wrote it."""
    import json

    example = json.loads((FIXTURES / "coincap" / "v2_rates_2018-08-06.json").read_bytes())
    for offset, euro in ((0, "1.1561549062589602"), (5, "-1")):
        ts = RECORDED_TIMESTAMP + offset * 60_000
        body = {**example, "timestamp": ts}
        body["data"] = [{**r, "rateUsd": euro} if r["id"] == "euro" else r for r in example["data"]]
        lake.write_rates("coincap", ts, json.dumps(body).encode())
    first = load_pending(lake, warehouse)
    again = load_pending(lake, warehouse)
    assert (first.files_loaded, first.rows_loaded, again.files_loaded) == (2, 169 + 168, 0)
    (row,) = warehouse._query(
        f"select count(*) as n, count(distinct lake_path) as files, "
        f"countif(symbol = 'EUR') as euros, max(if(symbol = 'EUR', rate_usd, null)) as euro "
        f"from `{warehouse.raw}.coincap_rates`"
    )
    assert (row.n, row.files, row.euros) == (169 + 168, 2, 1)
    assert row.euro == pytest.approx(1.1561549062589602)
