"""Market history: the whole market over any range, from our own snapshots (the market
sites show today's totals; we hold every 5-minute snapshot)."""

from __future__ import annotations

import streamlit as st

from streamlit_app import charts, data, ui

if ui.page_start("Market history"):
    range_ = ui.pick_range("1M")
    history = data.market_history(range_)
    points = history.dropna(subset=["total_market_cap_usd"]) if not history.empty else history
    if len(points) < 2:
        ui.too_few_points(range_, "Fewer than two snapshots in this range.")
    else:
        st.altair_chart(charts.market_totals_chart(history), width="stretch")
        st.altair_chart(charts.dominance_chart(history), width="stretch")
        gaps = len(history) - len(points)
        coins = points["asset_count"]
        st.caption(
            f"{len(points):,} points: "
            f"{ui.spacing(points['observed_at'], data.RANGE_SPECS[range_].granularity)}; "
            f"{coins.min():,}-{coins.max():,} coins behind each point."
            + (f" {gaps:,} gap(s) with no snapshot are left blank." if gaps else "")
        )
        ui.download_csv(points, f"market-history-{range_}")
        unmeasured = points["stablecoin_dominance_pct"].isna().sum()
        if unmeasured:
            st.caption(
                f"{unmeasured:,} point(s) have no stablecoin share: built before it was "
                "measured (a full refresh of mart_market_overview fills them)."
            )
