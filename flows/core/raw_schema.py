"""The raw tables, declared once: the loader's rows land here on DuckDB and on BigQuery alike,
each warehouse rendering this declaration in its own dialect (`DuckDBWarehouse`,
`BigQueryDatasets`). dbt's sources (`dbt/models/staging/_sources.yml`) read these tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["text", "integer", "bigint", "double", "timestamp"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    required: bool = False
    note: str = ""


@dataclass(frozen=True)
class RawTable:
    """A raw table and how it is laid out where the warehouse can (BigQuery): partitioned by
    `time_column` (each tick's queries then scan only recent partitions), clustered by
    `cluster_by`."""

    name: str
    columns: tuple[Column, ...]
    time_column: str
    partition: Literal["DAY", "MONTH"]
    cluster_by: tuple[str, ...]
    primary_key: str | None = None


_LOADED = (
    Column("source", "text", True, "coincap (live) or replay"),
    Column("lake_path", "text", True, "the lake file these rows came from"),
    Column(
        "loaded_at", "timestamp", True, "when this file was loaded, UTC (data, not a watermark)"
    ),
    Column("load_seq", "bigint", False, "the file's place in load order: the watermark"),
)

ASSETS = RawTable(
    "coincap_assets",
    (
        Column("snapshot_at", "timestamp", True, "the API's `timestamp`, UTC"),
        Column("id", "text", True),
        Column("rank", "integer", True),
        Column("symbol", "text"),
        Column("name", "text"),
        Column("supply", "double"),
        Column("max_supply", "double"),
        Column("market_cap_usd", "double"),
        Column("volume_usd_24hr", "double"),
        Column("price_usd", "double", True),
        Column("change_percent_24hr", "double"),
        Column("vwap_24hr", "double"),
        Column("explorer", "text"),
        *_LOADED,
    ),
    time_column="snapshot_at",
    partition="DAY",
    cluster_by=("id",),
)

HISTORY = RawTable(
    "coincap_history",
    (
        Column("coin_id", "text", True),
        Column("interval", "text", True, "m5, h1 or d1, as asked of /assets/{id}/history"),
        Column("point_at", "timestamp", True, "the point's `time`, UTC"),
        Column("price_usd", "double", True),
        Column("circulating_supply", "double"),
        *_LOADED,
    ),
    time_column="point_at",
    partition="MONTH",  # history reaches back years: far below BigQuery's 10,000 partitions
    cluster_by=("coin_id",),
)

RATES = RawTable(
    "coincap_rates",
    (
        Column("rates_at", "timestamp", True, "the `/rates` answer's `timestamp`, UTC"),
        Column("id", "text", True, "CoinCap's id of the currency: euro, japanese-yen"),
        Column("symbol", "text", True, "EUR, JPY; unique within one answer"),
        Column("currency_symbol", "text", False, "EUR's sign, when CoinCap gives one"),
        Column("type", "text", True, "fiat or crypto"),
        Column("rate_usd", "double", True, "US dollars one unit is worth"),
        *_LOADED,
    ),
    time_column="rates_at",
    # about 170 rows a tick, 49,000 a day: small partitions, but every tick reads the rates
    # of the recent span, and a month's partition would cost it 15 times a day's bytes
    # (bench/bigquery_cost.py). A table made with month partitions keeps them until recreated.
    partition="DAY",
    cluster_by=("symbol",),
)

MANIFEST = RawTable(
    "lake_files",
    (
        Column("lake_path", "text", True),
        Column("source", "text", True),
        Column("snapshot_at", "timestamp", True),
        Column("row_count", "integer", True),
        Column("loaded_at", "timestamp", True),
        Column("load_seq", "bigint", False, "1, 2, 3... in load order; never given out twice"),
        Column("size_bytes", "bigint", False, "the stored (gzip) file, to notice later changes"),
        Column("sha256", "text"),
    ),
    time_column="snapshot_at",
    partition="MONTH",
    cluster_by=("lake_path",),
    primary_key="lake_path",
)

RAW_TABLES = (ASSETS, HISTORY, RATES, MANIFEST)
# The tables of loaded rows (the manifest says which file each came from).
DATA_TABLES = (ASSETS, HISTORY, RATES)
