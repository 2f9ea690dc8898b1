"""Compare: several coins as % return from the start of a range, and their ranks."""

from __future__ import annotations

import streamlit as st

from streamlit_app import charts, data, ui

MAX_COINS = 8

if ui.page_start("Compare"):
    coins = data.coins()
    labels = {row.coin_id: f"{row.name} ({row.symbol})" for row in coins.itertuples()}
    wanted = [c for c in ui.query_param("coins", "bitcoin,ethereum").split(",") if c in labels]
    chosen = st.multiselect(
        "Coins",
        list(labels),
        default=wanted,
        format_func=labels.__getitem__,
        max_selections=MAX_COINS,
        key="coins",
    )
    st.query_params["coins"] = ",".join(chosen)
    range_ = ui.pick_range("1M")
    if not chosen:
        st.info("Pick one or more coins to compare.")
    else:
        series = data.compare_series(tuple(chosen), range_)
        if series.groupby("coin_id").size().max() < 2 if not series.empty else True:
            st.info("Not enough history in this range to compare: try a longer range.")
        else:
            st.altair_chart(charts.returns_chart(series), width="stretch")
            st.altair_chart(charts.rank_chart(series, color_by="coin_id"), width="stretch")
            st.caption(
                f"{data.RANGE_SPECS[range_].granularity.capitalize()}; "
                "each line starts at 0% at its coin's first point in the range."
            )
