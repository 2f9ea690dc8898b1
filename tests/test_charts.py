"""Chart builders are pure: DataFrame in, Altair chart out, checked without Streamlit."""

from __future__ import annotations

import altair as alt
import pandas as pd
import pytest

from streamlit_app import charts

pytestmark = pytest.mark.unit


def series(points: int, start_price: float = 100.0, step: float = 1.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "observed_at": pd.date_range("2025-03-16", periods=points, freq="5min"),
            "price_usd": [start_price + step * i for i in range(points)],
            "market_cap_usd": [1e9 + i for i in range(points)],
            "volume_usd_24hr": [1e7] * points,
            "rank": [3 - (i % 2) for i in range(points)],
        }
    )


def spec(chart: alt.TopLevelMixin) -> dict:
    return chart.to_dict()


def test_price_chart_is_a_line_coloured_by_the_range_direction() -> None:
    up = spec(charts.price_chart(series(10, step=1)))
    down = spec(charts.price_chart(series(10, step=-1)))
    assert up["mark"]["type"] == "line"
    assert up["encoding"]["x"]["field"] == "observed_at"
    assert up["encoding"]["y"]["field"] == "price_usd"
    assert up["encoding"]["y"]["scale"]["zero"] is False
    assert (up["mark"]["color"], down["mark"]["color"]) == (charts.UP, charts.DOWN)


def test_rank_chart_puts_rank_one_on_top() -> None:
    single = spec(charts.rank_chart(series(5)))
    several = spec(charts.rank_chart(series(5).assign(coin_id="bitcoin"), color_by="coin_id"))
    assert single["encoding"]["y"]["scale"]["reverse"] is True
    assert several["encoding"]["color"]["field"] == "coin_id"


def test_market_cap_and_volume_have_independent_axes() -> None:
    chart = spec(charts.market_cap_volume_chart(series(5)))
    assert [layer["mark"]["type"] for layer in chart["layer"]] == ["area", "bar"]
    assert chart["resolve"]["scale"]["y"] == "independent"


def test_returns_chart_has_one_line_per_coin_and_a_zero_rule() -> None:
    frame = pd.concat([series(4).assign(coin_id=c) for c in ("bitcoin", "ethereum")])
    chart = spec(charts.returns_chart(frame.assign(return_pct=0.0)))
    assert chart["layer"][0]["encoding"]["color"]["field"] == "coin_id"
    assert chart["layer"][1]["mark"]["type"] == "rule"


def test_most_traded_sorts_bars_by_volume() -> None:
    frame = pd.DataFrame(
        {"name": ["Tether", "Bitcoin"], "symbol": ["USDT", "BTC"], "volume_usd_24hr": [9e10, 5e10]}
    )
    chart = spec(charts.most_traded_chart(frame))
    assert chart["encoding"]["y"]["sort"] == "-x"
    values = next(iter(chart["datasets"].values()))
    assert [row["coin"] for row in values] == ["Tether (USDT)", "Bitcoin (BTC)"]


def test_snapshots_per_day_shows_gaps_and_missing_days_as_zero() -> None:
    per_day = pd.DataFrame(
        {
            "day": pd.to_datetime(["2025-03-01", "2025-03-02", "2025-03-04"]),
            "snapshots": [288, 200, 288],
            "expected": [288, 288, 288],
        }
    )
    chart = spec(charts.snapshots_per_day_chart(per_day))
    rows = next(iter(chart["datasets"].values()))
    assert [(row["snapshots"], row["status"]) for row in rows] == [
        (288, "complete"),
        (200, "gaps"),
        (0, "missing"),
        (288, "complete"),
    ]
    # snapshots are counted: the axis has no 0.2 of one (the replay has one a day)
    assert chart["encoding"]["y"]["axis"] == {"format": "d", "tickMinStep": 1}


def test_a_chart_refuses_more_points_than_a_browser_should_draw() -> None:
    with pytest.raises(charts.TooManyPoints, match="aggregate first"):
        charts.price_chart(series(charts.MAX_POINTS + 1))


def test_compare_names_its_series_in_the_order_chosen_with_distinct_colours() -> None:
    """Legend by name, in the picker's order (not alphabetical ids), from Tableau 10; rank 1
    at the top of an axis that starts at 1; returns on a log axis labelled in %."""
    chosen = ["Tether (USDT)", "Bitcoin (BTC)", "Ethereum (ETH)"]
    frame = pd.concat([series(4).assign(coin=c, return_pct=0.0) for c in chosen])
    returns = spec(charts.returns_chart(frame))["layer"][0]["encoding"]
    assert returns["color"]["field"] == "coin" and returns["color"]["sort"] == chosen
    assert returns["color"]["scale"] == {"scheme": "tableau10", "domain": chosen}
    assert returns["y"]["scale"]["type"] == "log" and "%" in returns["y"]["axis"]["labelExpr"]
    assert returns["y"]["scale"]["nice"] is False  # nice on log: -90%..+900% for a 5% move
    rank = spec(charts.rank_chart(frame, color_by="coin"))["encoding"]
    assert rank["y"]["scale"]["domainMin"] == 1 and rank["y"]["scale"]["reverse"] is True
    assert rank["y"]["axis"]["values"][0] == 1  # ticks are ranks: no rank 0 on the axis
    assert rank["color"]["sort"] == chosen


def test_sampled_prices_are_joined_by_straight_lines() -> None:
    """A smooth curve between daily closes draws moves that never happened."""
    mark = spec(charts.price_chart(series(5)))["mark"]
    assert mark.get("interpolate", "linear") == "linear"


def test_rank_ticks_are_ranks_from_one() -> None:
    assert charts.rank_ticks(3) == [1, 2, 3]
    assert charts.rank_ticks(133) == [1, 20, 40, 60, 80, 100, 120]
    assert charts.rank_ticks(2000)[:2] == [1, 500] and len(charts.rank_ticks(2000)) <= 7
    assert all(len(charts.rank_ticks(worst)) <= 7 for worst in range(1, 3000))
    assert len(charts.rank_ticks(2**31 - 1)) <= 7  # the largest rank the loader accepts


def market_history(points: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "observed_at": pd.date_range("2025-03-16", periods=points, freq="5min"),
            "total_market_cap_usd": [2e12 + i for i in range(points)],
            "total_volume_usd_24hr": [1e11] * points,
            "asset_count": [2000] * points,
            "btc_dominance_pct": [55.0] * points,
            "eth_dominance_pct": [12.0] * points,
            "stablecoin_dominance_pct": [None] + [8.0] * (points - 1),
        }
    )


def test_market_history_names_its_shares_and_counts_the_coins_behind_each_point() -> None:
    frame = market_history(4)
    dominance = spec(charts.dominance_chart(frame))
    rows = next(iter(dominance["datasets"].values()))
    assert dominance["encoding"]["color"]["sort"] == ["Bitcoin", "Ethereum", "USD stablecoins"]
    assert len(rows) == 12 and sum(row["pct"] is None for row in rows) == 1  # kept as a gap
    totals = spec(charts.market_totals_chart(frame))
    tooltips = [t["field"] for panel in totals["vconcat"] for t in panel["encoding"]["tooltip"]]
    assert tooltips.count("asset_count") == 2


def test_candles_are_coloured_by_their_own_open_and_close() -> None:
    frame = pd.DataFrame(
        {
            "observed_at": pd.date_range("2025-03-16", periods=3, freq="h"),
            "open_price_usd": [100.0, 105.0, 101.0],
            "high_price_usd": [106.0, 107.0, 101.0],
            "low_price_usd": [99.0, 100.0, 95.0],
            "close_price_usd": [105.0, 101.0, 101.0],
            "snapshot_count": [12, 12, 12],
        }
    )
    chart = spec(charts.candle_chart(frame, "candles"))
    rows = next(iter(chart["datasets"].values()))
    assert [row["direction"] for row in rows] == ["up", "down", "up"]  # a flat hour is up
    wick, body = chart["layer"]
    assert (wick["encoding"]["y"]["field"], wick["encoding"]["y2"]["field"]) == (
        "low_price_usd",
        "high_price_usd",
    )
    assert (body["encoding"]["y"]["field"], body["encoding"]["y2"]["field"]) == (
        "open_price_usd",
        "close_price_usd",
    )


def test_the_correlation_map_keeps_the_order_chosen_and_a_fixed_scale() -> None:
    names = ["Tether (USDT)", "Bitcoin (BTC)"]
    frame = pd.DataFrame(
        {
            "coin_a": [a for a in names for _ in names],
            "coin_b": names * 2,
            "correlation": [1.0, 0.1, 0.1, 1.0],
            "periods": [30] * 4,
        }
    )
    chart = spec(charts.correlation_chart(frame, names))
    cells = chart["layer"][0]["encoding"]
    assert cells["x"]["sort"] == names and cells["y"]["sort"] == names
    assert cells["color"]["scale"]["domain"] == [-1, 1]  # 0.1 is never drawn as the extreme
