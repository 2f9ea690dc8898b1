"""The cloud cost model: bytes BigQuery would bill per tick and per app page view, and the
monthly on-demand cost at 1, 30 and 365 days of history for 2,000 coins.

    python -m bench.bigquery_cost [--coins 2000]

The emulator reports 0 bytes for every job and does not partition, so the bytes are derived,
statement by statement, from the SQL each step really sends:

1. Two live-shaped ticks (bench/live_like.py) on the cloud target: the GCS and BigQuery
   emulators, the real `pipeline` flow, dbt-bigquery. The first builds every model; the
   second is a tick as the production schedule runs it 288 times a day. Then every app page
   (testkit/pages.py) through the app's BigQuery reader. Each statement is recorded with its
   query parameters as google-cloud-bigquery sends it (ours, dbt-bigquery's, the app's).
2. Each statement's table reads (testkit/scans.py): which columns of which table, and the
   constant lower bound on the table's partition column, if any. The bound's value is asked
   of the emulator with the statement's own parameters; from it, the partitions read.
3. Bytes of a read = rows in those partitions x the bytes per row of those columns.
   Rows per day are what 2,000 coins at 288 snapshots a day add to each table (below);
   bytes per row are measured on the emulator's tables, by BigQuery's data sizes (8 for
   INT64, FLOAT64 and TIMESTAMP, 2 + the UTF-8 length for STRING, 8 per array element). A
   statement is billed at least 10 MB per table it reads columns of; one that reads no
   column (`count(*)`) is answered from metadata, 0 bytes. Clustering is left out (an upper
   bound: BigQuery reads fewer blocks of a table clustered by coin for one coin's rows).
4. Monthly cost = bytes per tick x 8,640 ticks (or per page view x views) x $6.25 per TiB,
   BigQuery's on-demand list price (cloud.google.com/bigquery/pricing, US and EU multi-
   regions, 2026), before the first free TiB of each month.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from testkit.emulators import PROJECT, Emulator, bigquery_emulator, gcs_emulator
from testkit.scans import GROWING, Layout, TableRead, table_reads

TICKS_PER_MONTH = 288 * 30
PRICE_PER_TIB = 6.25
MIN_BYTES_PER_TABLE = 10 * 2**20
HISTORY_DAYS = (1, 30, 365)
MONTH_DAYS = 30.44


@dataclass(frozen=True)
class Statement:
    sql: str
    parameters: list[Any]  # google.cloud.bigquery query parameters


@contextlib.contextmanager
def recording() -> Iterator[list[Statement]]:
    """Every query sent through google-cloud-bigquery in this process (ours, dbt-bigquery's,
    the app reader's), with its parameters: the emulator's job list keeps no parameters."""
    from google.cloud import bigquery

    sent: list[Statement] = []
    original = bigquery.Client.query

    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        sql = kwargs.get("query", args[0] if args else "")
        config = kwargs.get("job_config", args[1] if len(args) > 1 else None)
        sent.append(Statement(sql, list(getattr(config, "query_parameters", None) or [])))
        return original(self, *args, **kwargs)

    bigquery.Client.query = query  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        bigquery.Client.query = original  # type: ignore[method-assign]


def rows_per_day(coins: int, rates: int) -> dict[str, float]:
    """What the schedule adds to each growing table per day: a snapshot of every coin and an
    answer of `/rates` every 5 minutes, their hourly and daily rollups, one market row per
    snapshot. coincap_history is the backfill's: taken here as large as the facts (m5 points
    for every coin), its upper bound."""
    ticks = 288
    return {
        "coincap_assets": coins * ticks,
        "stg_coinsdata": coins * ticks,
        "facts_coins": coins * ticks,
        "coincap_rates": rates * ticks,
        "stg_coincap_rates": rates * ticks,
        "mart_coin_hourly": coins * 24,
        "mart_coin_daily": coins,
        "mart_market_overview": ticks,
        "mart_fiat_rates_hourly": rates * 24,
        "lake_files": 2 * ticks,  # a snapshot and a /rates answer per tick
        "ops_builds": ticks,
    }


@contextlib.contextmanager
def cloud_target(root: Path, coins: int) -> Iterator[tuple[Emulator, Any]]:
    """The emulators, a Prefect test server, the live stand-in and the cloud settings."""
    import gcsfs
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery
    from prefect.testing.utilities import prefect_test_harness

    from bench.live_like import serve_live_like
    from bench.suite import TICK_START_DAY

    (root / "gcs").mkdir()
    with (
        gcs_emulator(root / "gcs") as gcs,
        bigquery_emulator(gcs, root / "bqemulator.log") as bq,
        prefect_test_harness(server_startup_timeout=180),
        serve_live_like(TICK_START_DAY, coins) as live_url,
    ):
        bucket, suffix = f"lake-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex[:8]
        gcsfs.GCSFileSystem(endpoint_url=gcs.url, token="anon").mkdir(bucket)
        os.environ.update(
            {
                "CRYPTOLYTICS_TARGET": "cloud",
                "CRYPTOLYTICS_LAKE_URL": f"gs://{bucket}/lake",
                "CRYPTOLYTICS_GCP_PROJECT": PROJECT,
                "CRYPTOLYTICS_GCS_ENDPOINT_URL": gcs.url,
                "CRYPTOLYTICS_BIGQUERY_API_ENDPOINT": bq.url,
                "CRYPTOLYTICS_BIGQUERY_STAGING_DATASET": f"stg_{suffix}",
                "CRYPTOLYTICS_BIGQUERY_PROD_DATASET": f"prod_{suffix}",
                "CRYPTOLYTICS_SERVING_DIR": str(root / "serving"),
                "CRYPTOLYTICS_SOURCE": "coincap",
                "CRYPTOLYTICS_COINCAP_BASE_URL": live_url,
                "CRYPTOLYTICS_COINCAP_API_KEY": "bench-stand-in-not-a-key",
                "CRYPTOLYTICS_ASSET_LIMIT": str(coins),
                "PREFECT_LOGGING_LEVEL": "WARNING",
            }
        )
        client = bigquery.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=bq.url),
        )
        yield bq, client


def bound_value(client: Any, read: TableRead, statement: Statement) -> datetime | None:
    """The lower bound's value, asked of the emulator with the statement's parameters."""
    from google.cloud import bigquery

    used = [p for p in statement.parameters if f"@{p.name}" in (read.bound or "")]
    config = bigquery.QueryJobConfig(query_parameters=used)
    expression = read.bound or ""
    if expression.startswith("(") and "," in expression:  # an IN list: its earliest value
        expression = f"least{expression}"
    (row,) = client.query(f"select {expression} as bound", job_config=config).result()
    value = row["bound"]
    return value if isinstance(value, datetime) else None


def column_bytes(client: Any, dataset: str, table: str) -> dict[str, float]:
    """Average bytes per row of each column, by BigQuery's data sizes."""
    schema = client.get_table(f"{dataset}.{table}").schema
    parts = []
    for field in schema:
        name = f"`{field.name}`"
        if field.mode == "REPEATED":
            parts.append(f"avg(8 * array_length({name})) as `{field.name}`")
        elif field.field_type == "STRING":
            parts.append(f"avg(2 + coalesce(byte_length({name}), 0)) as `{field.name}`")
        elif field.field_type == "BOOLEAN":
            parts.append(f"1 as `{field.name}`")
        else:
            parts.append(f"8 as `{field.name}`")
    (row,) = client.query(f"select {', '.join(parts)} from `{dataset}.{table}`").result()
    return {key: float(value or 0) for key, value in row.items()}


@dataclass
class Priced:
    """One statement at each history size: bytes billed, and the reads that made them."""

    sql: str
    billed: dict[int, float]
    unbounded: list[str]


def price(
    statement: Statement,
    client: Any,
    widths: dict[str, dict[str, float]],
    growth: dict[str, float],
    fixed_rows: dict[str, int],
    newest: datetime,
) -> Priced:
    """Bytes billed by one statement with 1, 30 and 365 days of history."""
    unpartitioned = Layout(None, None)
    layouts = {name: GROWING.get(name, unpartitioned) for name in widths}
    reads = [r for r in table_reads(statement.sql, layouts, unpartitioned) if r.columns]
    billed = dict.fromkeys(HISTORY_DAYS, 0.0)
    unbounded = []
    for read in reads:
        per_row = sum(
            width
            for column, width in widths.get(read.table, {}).items()
            if "*" in read.columns or read.kind != "read" or column in read.columns
        )
        layout = layouts.get(read.table, unpartitioned)
        span: float | None = None  # days of partitions read; None: the whole table
        if layout.time_column and read.bound:
            start = bound_value(client, read, statement)
            if start is not None:
                if layout.granularity == "day":
                    span = max(0, (newest.date() - start.date()).days + 1)
                else:
                    months = (newest.year - start.year) * 12 + newest.month - start.month + 1
                    span = max(0, months) * MONTH_DAYS
        elif layout.time_column:
            unbounded.append(f"{read.table} ({read.kind})")
        for days in HISTORY_DAYS:
            if read.table in growth:
                rows = growth[read.table] * (days if span is None else min(days, span))
            else:
                rows = fixed_rows.get(read.table, 0)
            billed[days] += max(MIN_BYTES_PER_TABLE, rows * per_row)
    return Priced(statement.sql, billed, unbounded)


def scalar(client: Any, sql: str) -> Any:
    (row,) = client.query(sql).result()
    return row[0]


def tib_cost(bytes_: float) -> float:
    return bytes_ / 2**40 * PRICE_PER_TIB


def run(coins: int) -> dict[str, Any]:
    from flows.core.settings import Settings
    from flows.pipeline import pipeline
    from testkit.pages import page_queries

    with tempfile.TemporaryDirectory(prefix="cryptolytics-cost-") as tmp:
        root = Path(tmp)
        with cloud_target(root, coins) as (_emulator, client):
            settings = Settings()
            pipeline()  # the first build: every model, whole
            with recording() as tick:
                pipeline()  # a tick as the schedule runs it
            pages: dict[str, list[Statement]] = {}
            import streamlit as st

            for name, run_page in page_queries().items():
                st.cache_data.clear()
                with recording() as pages[name]:
                    run_page()
            widths, fixed_rows = {}, {}
            for dataset in (settings.bigquery_staging_dataset, settings.bigquery_prod_dataset):
                for table in client.list_tables(dataset):
                    name = table.table_id
                    if "__dbt_tmp" in name:
                        continue
                    widths[name] = column_bytes(client, dataset, name)
                    fixed_rows[name] = client.get_table(f"{dataset}.{name}").num_rows or 0
            for view, table in (("stg_coinsdata", "coincap_assets"),):
                fixed_rows.setdefault(view, fixed_rows.get(table, 0))
            staging = settings.bigquery_staging_dataset
            rates = scalar(client, f"select count(distinct symbol) from {staging}.coincap_rates")
            newest = scalar(client, f"select max(snapshot_at) from {staging}.lake_files")
            growth = rows_per_day(coins, int(rates))
            priced_tick = [price(s, client, widths, growth, fixed_rows, newest) for s in tick]
            priced_pages = {
                name: [price(s, client, widths, growth, fixed_rows, newest) for s in statements]
                for name, statements in pages.items()
            }
    return summarise(priced_tick, priced_pages, growth)


def summarise(
    tick: list[Priced], pages: dict[str, list[Priced]], growth: dict[str, float]
) -> dict[str, Any]:
    """Figures by history size, keyed "1", "30", "365" (as they read back from JSON)."""

    def total(priced: list[Priced]) -> dict[str, float]:
        return {str(days): sum(p.billed[days] for p in priced) for days in HISTORY_DAYS}

    per_tick = total(tick)
    heaviest = sorted(tick, key=lambda p: p.billed[365], reverse=True)[:5]
    return {
        "statements_per_tick": len(tick),
        "unbounded_reads_per_tick": sorted({u for p in tick for u in p.unbounded}),
        "tick_bytes": per_tick,
        "tick_monthly_usd": {
            d: round(tib_cost(b * TICKS_PER_MONTH), 2) for d, b in per_tick.items()
        },
        "tick_ratio_365_to_1": round(per_tick["365"] / per_tick["1"], 2),
        "page_statements": {name: len(priced) for name, priced in pages.items()},
        "page_bytes": {name: total(priced) for name, priced in pages.items()},
        "heaviest_tick_statements": [
            {
                "mb_at_365_days": round(p.billed[365] / 2**20, 1),
                "sql": " ".join(p.sql.split())[:300],
            }
            for p in heaviest
        ],
        "rows_per_day": growth,
    }


def mb(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB" if value < 2**30 else f"{value / 2**30:,.2f} GiB"


def show(result: dict[str, Any]) -> None:
    days = [str(d) for d in HISTORY_DAYS]
    print(f"BigQuery bytes billed (derived, {result['statements_per_tick']} statements a tick)")
    print(f"{'':40}" + "".join(f"{f'{d} d history':>16}" for d in days))
    print(f"{'a tick':40}" + "".join(f"{mb(result['tick_bytes'][d]):>16}" for d in days))
    monthly = "".join(f"{'$' + format(result['tick_monthly_usd'][d], ',.2f'):>16}" for d in days)
    print(f"{'  8,640 ticks (a month), on demand':40}{monthly}")
    for name, by_days in result["page_bytes"].items():
        views = "".join(f"{'$' + format(tib_cost(by_days[d] * 1000), ',.2f'):>16}" for d in days)
        print(f"{'page ' + name:40}" + "".join(f"{mb(by_days[d]):>16}" for d in days))
        print(f"{'  1,000 views':40}{views}")
    print(
        f"tick at 365 days / 1 day: {result['tick_ratio_365_to_1']}x;"
        f" unbounded reads in a tick: {result['unbounded_reads_per_tick'] or 'none'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coins", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/bigquery_cost.json"))
    args = parser.parse_args()
    result = run(args.coins)
    show(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
