"""The app's return, volatility, drawdown, correlation and rank queries on real DuckDB, over
small hand-computed inputs: the SQL the pages run (data.py), not a re-implementation."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterator
from datetime import datetime, timedelta

import duckdb
import pytest

from streamlit_app import data

pytestmark = pytest.mark.unit

DAY0 = datetime(2025, 3, 1)
# a: +10 %, -10 %, +22.2 %; b the same moves from another price; c the opposite moves;
# d has no close on day 2, so its day-3 return would span two days and is left out.
CLOSES = {
    "a": [100.0, 110.0, 99.0, 121.0],
    "b": [50.0, 55.0, 49.5, 60.5],
    "c": [10.0, 9.0, 9.9, 9.9 * (1 - 22 / 99)],
    "d": [100.0, 200.0, None, 100.0],
}


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    connection.execute("create schema prod")
    connection.execute(
        "create table prod.mart_coin_daily "
        "(coin_id varchar, bucket_at timestamp, close_price_usd double, last_rank integer)"
    )
    for coin_id, closes in CLOSES.items():
        for day, close in enumerate(closes):
            if close is not None:
                connection.execute(
                    "insert into prod.mart_coin_daily values (?, ?, ?, null)",
                    [coin_id, DAY0 + timedelta(days=day), close],
                )
    yield connection
    connection.close()


def missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def params(*coin_ids: str) -> dict[str, object]:
    return {
        **{f"coin_{i}": coin_id for i, coin_id in enumerate(coin_ids)},
        "since": DAY0 - timedelta(days=1),
        "as_of": DAY0 + timedelta(days=3),
    }


def rows(con: duckdb.DuckDBPyConnection, sql: str, values: dict[str, object]) -> list[dict]:
    frame = con.execute(sql, values).df()
    return frame.to_dict("records")


def test_return_volatility_and_drawdown_per_coin(con: duckdb.DuckDBPyConnection) -> None:
    sql = data.compare_stats_sql("daily", 4)
    stats = {
        row["coin_id"]: row
        for row in rows(con, sql, {**params("a", "b", "c", "d"), "periods_per_year": 365})
    }
    a = stats["a"]
    assert a["return_count"] == 3
    assert a["total_return_pct"] == pytest.approx(21.0)  # 100 -> 121
    sd = statistics.stdev([0.1, -0.1, 22 / 99])
    assert a["volatility_pct"] == pytest.approx(100 * sd)
    assert a["annualised_volatility_pct"] == pytest.approx(100 * sd * math.sqrt(365))
    assert a["max_drawdown_pct"] == pytest.approx(-10.0)  # 99 against the 110 before it
    assert stats["b"]["volatility_pct"] == pytest.approx(a["volatility_pct"])  # same moves
    assert stats["c"]["max_drawdown_pct"] == pytest.approx(100 * (7.7 / 10 - 1))
    # d: +100 % on day 1, then no day 2, so day 3's return is not a daily return
    assert stats["d"]["return_count"] == 1
    assert stats["d"]["max_drawdown_pct"] == pytest.approx(-50.0)
    assert stats["d"]["total_return_pct"] == pytest.approx(0.0)


def test_correlation_of_returns_over_the_periods_both_have(
    con: duckdb.DuckDBPyConnection,
) -> None:
    sql = data.correlation_sql("daily", 4)
    pairs = {(r["coin_a"], r["coin_b"]): r for r in rows(con, sql, params("a", "b", "c", "d"))}
    assert pairs[("a", "a")]["correlation"] == pytest.approx(1.0)
    assert pairs[("a", "b")]["correlation"] == pytest.approx(1.0)  # the same moves
    assert pairs[("a", "c")]["correlation"] == pytest.approx(-1.0)  # the opposite moves
    assert pairs[("a", "c")]["periods"] == 3
    assert pairs[("a", "d")]["periods"] == 1  # one return in common: no correlation
    assert missing(pairs[("a", "d")]["correlation"])
    assert len(pairs) == 16  # the whole matrix, both halves


def test_only_the_coins_asked_for_are_read(con: duckdb.DuckDBPyConnection) -> None:
    sql = data.compare_stats_sql("daily", 2)
    found = rows(con, sql, {**params("a", "c"), "periods_per_year": 365})
    assert [row["coin_id"] for row in found] == ["a", "c"]


def test_in_a_coin_quote_each_close_is_divided_by_that_coins_close_of_the_same_day(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """b makes a's moves from half its price, so a is flat in b; d misses day 2, so in d the
    day-3 return would span two days and is left out, as in USD."""
    in_b = data.Quote("B", "b")
    stats = {
        row["coin_id"]: row
        for row in rows(
            con,
            data.compare_stats_sql("daily", 3, in_b),
            {**params("a", "b", "c"), "quote_coin": "b", "periods_per_year": 365},
        )
    }
    for coin in ("a", "b"):  # a is 2 b at every close; b is 1 b
        assert stats[coin]["total_return_pct"] == pytest.approx(0.0)
        assert stats[coin]["volatility_pct"] == pytest.approx(0.0)
        assert stats[coin]["max_drawdown_pct"] == pytest.approx(0.0)
    ratios = [c / b for c, b in zip(CLOSES["c"], CLOSES["b"], strict=True) if c and b]
    returns = [now / before - 1 for before, now in itertools.pairwise(ratios)]
    assert stats["c"]["total_return_pct"] == pytest.approx(100 * (ratios[-1] / ratios[0] - 1))
    assert stats["c"]["volatility_pct"] == pytest.approx(100 * statistics.stdev(returns))

    in_d = data.Quote("D", "d")
    a_in_d = rows(
        con,
        data.compare_stats_sql("daily", 1, in_d),
        {**params("a"), "quote_coin": "d", "periods_per_year": 365},
    )[0]
    assert a_in_d["return_count"] == 1  # day 1 only: day 2 has no d, day 3 follows a gap
    assert a_in_d["total_return_pct"] == pytest.approx(100 * (121 / 100 / (100 / 100) - 1))
    assert a_in_d["max_drawdown_pct"] == pytest.approx(100 * ((110 / 200) / 1 - 1))

    pairs = {
        (r["coin_a"], r["coin_b"]): r["correlation"]
        for r in rows(
            con,
            data.correlation_sql("daily", 3, in_b),
            {**params("a", "b", "c"), "quote_coin": "b"},
        )
    }
    assert missing(pairs[("b", "c")])  # b in b never moves: it correlates with nothing
    assert missing(pairs[("a", "c")])
    assert pairs[("c", "c")] == pytest.approx(1.0)


def test_a_series_in_a_coin_quote_has_no_point_where_the_quote_coin_has_no_price() -> None:
    connection = duckdb.connect()
    connection.execute("create schema prod")
    connection.execute(
        "create table prod.mart_coin_hourly (coin_id varchar, bucket_at timestamp, "
        "close_price_usd double, close_market_cap_usd double, last_volume_usd_24hr double, "
        "last_rank integer, last_supply double)"
    )
    hours = [DAY0 + timedelta(hours=h) for h in range(3)]
    rows_in = [
        ("ethereum", hours[0], 2_000.0, 240e9, 12e9, 2, 120e6),
        ("ethereum", hours[1], 2_100.0, 252e9, 13e9, 2, 120e6),
        ("ethereum", hours[2], 2_050.0, 246e9, 11e9, 2, 120e6),
        ("bitcoin", hours[0], 40_000.0, 780e9, 30e9, 1, 19.5e6),
        ("bitcoin", hours[1], 0.0, 0.0, 0.0, 1, 19.5e6),  # a broken price divides nothing
        ("bitcoin", hours[2], 41_000.0, 800e9, 31e9, 1, 19.5e6),
    ]
    connection.executemany(
        "insert into prod.mart_coin_hourly values (?, ?, ?, ?, ?, ?, ?)", rows_in
    )
    btc = data.QUOTES["BTC"]
    frame = connection.execute(
        data.series_sql("hourly", 1, btc),
        {**params("ethereum"), "quote_coin": "bitcoin", "as_of": hours[-1]},
    ).df()
    connection.close()
    assert list(frame["observed_at"]) == [hours[0], hours[2]]
    assert list(frame.columns) == [
        "observed_at",
        "coin_id",
        "price_btc",
        "market_cap_btc",
        "volume_btc_24hr",
        "rank",
        "supply",
    ]
    assert frame["price_btc"].tolist() == pytest.approx([2_000 / 40_000, 2_050 / 41_000])
    assert frame["market_cap_btc"].tolist() == pytest.approx([240e9 / 40_000, 246e9 / 41_000])
    assert frame["volume_btc_24hr"].tolist() == pytest.approx([12e9 / 40_000, 11e9 / 41_000])
    assert frame["rank"].tolist() == [2, 2] and frame["supply"].tolist() == [120e6, 120e6]


@pytest.fixture
def ranked(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Ranks on day 0 (the range's start) and the latest ranking with the movers' columns."""
    con.execute("update prod.mart_coin_daily set last_rank = null")
    for coin_id, rank in {"a": 1, "b": 2, "c": 3, "gone": 4}.items():
        con.execute("insert into prod.mart_coin_daily values (?, ?, 1, ?)", [coin_id, DAY0, rank])
    con.execute("delete from prod.mart_coin_daily where last_rank is null")
    con.execute(
        """
        create table prod.mart_latest_ranking as select * from (values
            ('b', 1, 5, 4, 1e9, 1e9, false),
            ('c', 2, 3, 1, 1e9, 1e9, false),
            ('new', 3, null, null, 1e9, 1e9, false),
            ('a', 5, 1, -4, 1e9, 1e9, false),
            ('thin', 6, 60, 54, 10.0, 1e9, false),
            ('flagged', 7, 70, 63, 1e9, 1e9, true)
        ) as t(coin_id, rank, rank_7d_ago, rank_change_7d, volume_usd_24hr, market_cap_usd,
               has_quality_flag)
        """
    )
    ranked_columns = "upper(coin_id) as name, coin_id as symbol, 1.0 as price_usd"
    con.execute(
        f"create or replace table prod.mart_latest_ranking as "
        f"select *, {ranked_columns} from prod.mart_latest_ranking"
    )
    con.execute(
        "create table prod.dim_coins as select coin_id, upper(coin_id) as name, "
        "coin_id as symbol from prod.mart_latest_ranking union all select 'gone', 'GONE', 'g'"
    )
    return con


def test_entries_and_exits_of_the_top_n_with_both_ranks(
    ranked: duckdb.DuckDBPyConnection,
) -> None:
    found = rows(ranked, data.turnover_sql("daily"), {"start_at": DAY0, "top_n": 2})
    moves = {(r["movement"], r["coin_id"]): (r["rank_before"], r["rank_now"]) for r in found}
    assert moves == {("entered", "c"): (3, 2), ("left", "a"): (1, 5)}

    found = rows(ranked, data.turnover_sql("daily"), {"start_at": DAY0, "top_n": 4})
    moves = {(r["movement"], r["coin_id"]): (r["rank_before"], r["rank_now"]) for r in found}
    left = moves[("left", "gone")]
    assert left[0] == 4 and missing(left[1])  # no longer ranked
    entered = moves[("entered", "new")]
    assert missing(entered[0]) and entered[1] == 3  # not ranked at the start
    assert moves[("left", "a")] == (1, 5)  # from #1 to #5: out of the top 4 too
    assert set(moves) == {("left", "gone"), ("left", "a"), ("entered", "new")}


def test_rank_movers_are_liquid_unflagged_coins_by_places(
    ranked: duckdb.DuckDBPyConnection,
) -> None:
    filter_params = {"min_volume_usd": 1e5, "min_market_cap_usd": 1e6, "limit": 10}
    climbers = rows(ranked, data.rank_movers_sql("7d", "climbers"), filter_params)
    # thin (+54, $10 of volume) and flagged (+63) climbed further, and are left out
    assert [(r["coin_id"], r["rank_change"]) for r in climbers] == [("b", 4), ("c", 1)]
    fallers = rows(ranked, data.rank_movers_sql("7d", "fallers"), filter_params)
    assert [(r["coin_id"], r["rank_before"], r["rank"]) for r in fallers] == [("a", 1, 5)]
    with pytest.raises(KeyError):
        data.rank_movers_sql("7d; drop table x", "climbers")


def test_in_a_fiat_quote_a_figure_is_divided_by_the_last_rate_of_its_hour_or_day() -> None:
    """Two snapshots in one hour share that hour's rate; an hour with no rate has no point;
    a daily close takes the day's last hourly rate."""
    connection = duckdb.connect()
    connection.execute("create schema prod")
    connection.execute(
        "create table prod.facts_coins (coin_id varchar, snapshot_at timestamp, "
        "price_usd double, market_cap_usd double, volume_usd_24hr double, rank integer, "
        "supply double)"
    )
    connection.execute(
        "create table prod.mart_fiat_rates_hourly "
        "(symbol varchar, bucket_at timestamp, close_rate_usd double)"
    )
    at = [DAY0 + timedelta(hours=10, minutes=m) for m in (5, 55, 65, 125)]
    connection.executemany(
        "insert into prod.facts_coins values ('bitcoin', ?, ?, ?, ?, 1, 19.5e6)",
        [(moment, 80_000.0 + i, 1.6e12, 3e10) for i, moment in enumerate(at)],
    )
    connection.executemany(
        "insert into prod.mart_fiat_rates_hourly values (?, ?, ?)",
        [
            ("EUR", DAY0 + timedelta(hours=10), 1.08),
            ("EUR", DAY0 + timedelta(hours=12), 1.10),  # 11:00 has no rate
            ("GBP", DAY0 + timedelta(hours=10), 1.29),
        ],
    )
    euro = data.Quote("EUR", fiat=True)
    values = {**params("bitcoin"), "quote_symbol": "EUR", "as_of": at[-1]}
    frame = connection.execute(data.series_sql("facts", 1, euro), values).df()
    assert list(frame["observed_at"]) == [at[0], at[1], at[3]]  # 11:05 had no rate
    assert frame["price_eur"].tolist() == pytest.approx(
        [80_000 / 1.08, 80_001 / 1.08, 80_003 / 1.10]
    )
    assert frame["market_cap_eur"].tolist() == pytest.approx([1.6e12 / 1.08] * 2 + [1.6e12 / 1.10])

    connection.execute(
        "create table prod.mart_coin_daily as select 'bitcoin' as coin_id, "
        "?::timestamp as bucket_at, 80003.0 as close_price_usd, 1.6e12 as close_market_cap_usd, "
        "3e10 as last_volume_usd_24hr, 1 as last_rank, 19.5e6 as last_supply",
        [DAY0],
    )
    daily = connection.execute(data.series_sql("daily", 1, euro), values).df()
    connection.close()
    assert daily["price_eur"].tolist() == pytest.approx([80_003 / 1.10])  # 12:00's, the last
