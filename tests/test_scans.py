"""testkit/scans.py tells which partitions a BigQuery statement reads: the cloud tests and the
cost model rely on it seeing a constant partition filter where there is one, and none where
BigQuery could not prune (a subquery, another table's column)."""

from __future__ import annotations

import pytest

from testkit.scans import GROWING, table_reads

pytestmark = pytest.mark.unit


def bounds(sql: str) -> list[tuple[str, str | None]]:
    return [(read.table, read.bound) for read in table_reads(sql, GROWING)]


@pytest.mark.parametrize(
    ("where", "bound"),
    [
        ("snapshot_at >= timestamp '2026-12-01 00:00:00'",
         "CAST('2026-12-01 00:00:00' AS TIMESTAMP)"),
        ("load_seq > 7 and snapshot_at > @since", "@since"),
        ("timestamp_sub(current_timestamp(), interval 2 day) <= snapshot_at",
         "TIMESTAMP_SUB(current_timestamp(), INTERVAL '2' DAY)"),
        ("snapshot_at between @start and @end", "@start"),
        ("snapshot_at in (timestamp '2026-12-01', timestamp '2026-11-30')",
         "(CAST('2026-12-01' AS TIMESTAMP), CAST('2026-11-30' AS TIMESTAMP))"),
        ("load_seq > 7", None),  # not the partition column
        ("snapshot_at >= (select max(snapshot_at) from d.mart_market_overview)", None),
        ("snapshot_at >= timestamp '2026-12-01' or load_seq is null", None),  # no pruning
    ],
)  # fmt: skip
def test_a_constant_filter_on_the_partition_column_is_a_bound(
    where: str, bound: str | None
) -> None:
    sql = f"select max(load_seq) from `p`.`d`.`facts_coins` where {where}"
    assert dict(bounds(sql))["facts_coins"] == bound


def test_a_bound_on_another_tables_column_does_not_prune_this_one() -> None:
    sql = (
        "select f.price_usd from d.facts_coins as f join d.mart_market_overview as o "
        "on o.snapshot_at >= timestamp '2026-12-01' and f.snapshot_at = o.snapshot_at"
    )
    assert sorted(bounds(sql)) == [
        ("facts_coins", None),
        ("mart_market_overview", "CAST('2026-12-01' AS TIMESTAMP)"),
    ]


def test_the_on_of_a_left_join_bounds_only_the_table_it_brings_in() -> None:
    sql = (
        "select f.price_usd from d.facts_coins as f left join d.mart_coin_hourly as h "
        "on f.snapshot_at >= timestamp '2026-12-01' and h.bucket_at >= timestamp '2026-12-01'"
    )
    assert sorted(bounds(sql)) == [
        ("facts_coins", None),  # a LEFT JOIN keeps every row of f
        ("mart_coin_hourly", "CAST('2026-12-01' AS TIMESTAMP)"),
    ]


def test_columns_are_those_of_the_block_that_reads_the_table() -> None:
    sql = (
        "select (select count(*) from d.facts_coins) as n, max(snapshot_at) "
        "from d.mart_market_overview"
    )
    columns = {read.table: read.columns for read in table_reads(sql, GROWING)}
    assert columns == {"facts_coins": frozenset(), "mart_market_overview": {"snapshot_at"}}
    (star,) = table_reads("select * from d.stg_coinsdata where load_seq > 3", GROWING)
    assert "*" in star.columns


def test_a_merge_reads_its_target_within_its_on_condition_and_a_create_writes() -> None:
    merge = (
        "merge into d.mart_coin_hourly as DBT_INTERNAL_DEST using (select * from d.tmp) as s "
        "on DBT_INTERNAL_DEST.bucket_at >= timestamp '2026-12-01' "
        "and s.coin_id = DBT_INTERNAL_DEST.coin_id "
        "when matched then update set close_price_usd = s.close_price_usd"
    )
    ((table, bound),) = bounds(merge)
    assert (table, bound) == ("mart_coin_hourly", "CAST('2026-12-01' AS TIMESTAMP)")
    assert table_reads(merge, GROWING)[0].kind == "merge target"
    unbounded = merge.replace("DBT_INTERNAL_DEST.bucket_at >= timestamp '2026-12-01' and ", "")
    assert bounds(unbounded) == [("mart_coin_hourly", None)]
    create = "create or replace table d.facts_coins as select * from d.stg_coinsdata"
    assert bounds(create) == [("stg_coinsdata", None)]  # the created table is not read


def test_a_bound_given_only_outside_a_cte_is_not_seen() -> None:
    """Conservative: BigQuery may push such a filter down; the check does not count on it."""
    sql = (
        "with staged as (select * from d.stg_coinsdata) "
        "select * from staged where snapshot_at >= timestamp '2026-12-01'"
    )
    assert bounds(sql) == [("stg_coinsdata", None)]
