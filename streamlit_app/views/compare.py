"""Compare: several coins as % return from the start of a range, and their ranks."""

from __future__ import annotations

import streamlit as st

from streamlit_app import charts, data, ui

MAX_COINS = 8

if ui.page_start("Compare"):
    coins = data.coins()
    labels = {row.coin_id: f"{row.name} ({row.symbol})" for row in coins.itertuples()}
    asked = [c for c in ui.query_param("coins", "bitcoin,ethereum").split(",") if c]
    known = list(dict.fromkeys(c for c in asked if c in labels))  # once each, in link order
    wanted = known[:MAX_COINS]
    unknown = [c for c in asked if c not in labels]
    if unknown or len(known) > MAX_COINS:
        dropped = []
        if unknown:
            shown = ", ".join(f"“{ui.plain(c[:40])}”" for c in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            dropped.append(f"{shown}{more} (not coins we hold)")
        if len(known) > MAX_COINS:
            dropped.append(f"{len(known) - MAX_COINS} coin(s) beyond the first {MAX_COINS}")
        ui.link_notice(f"Left out of the link's coins: {'; '.join(dropped)}.")
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
        # named in the legend, in the order chosen (names are data: Vega draws them as text)
        series["coin"] = series["coin_id"].map(labels)
        series = series.sort_values("coin_id", key=lambda ids: ids.map(chosen.index), kind="stable")
        if series.groupby("coin_id").size().max() < 2 if not series.empty else True:
            ui.too_few_points(range_, "Not enough history in this range to compare.")
        else:
            st.altair_chart(charts.returns_chart(series), width="stretch")
            st.altair_chart(charts.rank_chart(series, color_by="coin"), width="stretch")
            points = ui.spacing(series["observed_at"], data.RANGE_SPECS[range_].granularity)
            st.caption(
                f"{points.capitalize()}; each line starts at 0% at its coin's first point in "
                "the range."
            )
