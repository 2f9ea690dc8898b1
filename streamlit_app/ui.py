"""What every page shares: the data-source banner, the empty state, number formatting."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, cast

import pandas as pd
import streamlit as st

from streamlit_app import data


def page_start(title: str) -> bool:
    """Title, then the replay banner or the empty state. False: nothing to show yet."""
    st.title(title)
    if not data.has_data():
        st.info(
            "No data yet. The pipeline publishes its first snapshot a few seconds after "
            "`make up` starts; this page fills in on its own within a minute."
        )
        return False
    source = data.data_source()
    if source["latest_source"] == "replay":
        st.warning(
            f"**Replay, not live data.** These are real daily market data from "
            f"{_day(source['replay_from'])} to {_day(source['replay_to'])} (CoinGecko), "
            "replayed one day per pipeline run because no CoinCap API key is set.",
            icon=":material/history:",
        )
    return True


def _day(value: Any) -> str:
    return "?" if value is None or pd.isna(value) else pd.Timestamp(value).strftime("%Y-%m-%d")


def usd(value: float | None, compact: bool = True) -> str:
    """$1.23T, $45.6B, $7.89M; plain dollars below a million."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if compact:
        for limit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
            if abs(value) >= limit:
                return f"${value / limit:,.2f}{suffix}"
    return f"${value:,.0f}"


def price(value: float | None) -> str:
    """Enough decimals to see a micro-cap price move, no more than a large one needs."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if value >= 1:
        return f"${value:,.2f}"
    return f"${value:.{max(2, -math.floor(math.log10(value)) + 3)}f}"


def pct(value: float | None) -> str:
    """+1.23% / -4.56%, and an em dash when there is no value (too little history)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:+.2f}%"


def age(moment: Any) -> str:
    """How long ago, in words: '3 min ago', '2 h ago', '1,791 days ago'."""
    if moment is None or pd.isna(moment):
        return "never"
    then = (
        pd.Timestamp(moment).tz_localize(UTC)
        if pd.Timestamp(moment).tzinfo is None
        else pd.Timestamp(moment)
    )
    seconds = (datetime.now(tz=UTC) - then.to_pydatetime()).total_seconds()
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:,.0f} days ago"


def minutes_since(moment: Any) -> float | None:
    if moment is None or pd.isna(moment):
        return None
    then = (
        pd.Timestamp(moment).tz_localize(UTC)
        if pd.Timestamp(moment).tzinfo is None
        else pd.Timestamp(moment)
    )
    return (datetime.now(tz=UTC) - then.to_pydatetime()).total_seconds() / 60


def query_param(name: str, default: str) -> str:
    return st.query_params.get(name, default)


def pick_range(default: data.Range) -> data.Range:
    """The range buttons, kept in the URL (`?range=1M`) so a view can be shared."""
    wanted = query_param("range", default)
    chosen = st.segmented_control(
        "Range", data.RANGES, default=wanted if wanted in data.RANGES else default, key="range"
    )
    chosen = chosen or default
    st.query_params["range"] = chosen
    return cast(data.Range, chosen)
