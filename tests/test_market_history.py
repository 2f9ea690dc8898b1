"""The market history's gaps: a missed stretch is a break in the line, never a line drawn
across it, and sparse data (the daily replay) is not a gap."""

from __future__ import annotations

import pandas as pd
import pytest

from streamlit_app import data
from streamlit_app.data import with_gaps

pytestmark = pytest.mark.unit


def frame(times: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"observed_at": pd.to_datetime(times), "total_market_cap_usd": 1.0})


def test_a_missed_stretch_becomes_one_row_of_nulls_inside_it() -> None:
    times = ["2025-03-16 12:00", "2025-03-16 12:05", "2025-03-16 12:10", "2025-03-16 13:10"]
    out = with_gaps(frame(times), pd.Timedelta(minutes=5))
    assert len(out) == 5 and out["total_market_cap_usd"].isna().sum() == 1
    gap = out.loc[out["total_market_cap_usd"].isna(), "observed_at"].iat[0]
    assert pd.Timestamp("2025-03-16 12:10") < gap < pd.Timestamp("2025-03-16 13:10")
    assert out["observed_at"].is_monotonic_increasing
    counted = with_gaps(frame(times).assign(asset_count=2000), pd.Timedelta(minutes=5))
    assert f"{counted['asset_count'].max():,}" == "2,000"  # a count, not 2,000.0


def test_steady_data_and_the_daily_replay_have_no_gap() -> None:
    steady = [f"2025-03-16 12:{m:02d}" for m in range(0, 60, 5)]
    assert len(with_gaps(frame(steady), pd.Timedelta(minutes=5))) == len(steady)
    daily = [f"2021-01-0{d}" for d in range(1, 8)]  # 7D on the replay: one point a day
    assert len(with_gaps(frame(daily), pd.Timedelta(minutes=5))) == len(daily)


def test_compare_draws_every_kth_point_and_keeps_each_coins_first_and_last() -> None:
    times = pd.date_range("2025-03-01", periods=720, freq="h")
    series = pd.concat(
        [pd.DataFrame({"observed_at": times, "coin_id": c, "price_usd": 1.0}) for c in "abcdefgh"]
    )  # 8 coins x 720 hourly closes: Compare at 1M on a live source
    kept, every = data.thinned(series, 5000)
    assert len(series) == 5760 and len(kept) <= 5000 and every == 2
    for _, coin in kept.groupby("coin_id"):
        assert coin["observed_at"].min() == times[0] and coin["observed_at"].max() == times[-1]
    small, one = data.thinned(series.head(100), 5000)
    assert one == 1 and len(small) == 100
