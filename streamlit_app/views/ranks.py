"""Ranks: who climbed and who fell, and who entered or left the top 10 / 100 / 1,000. The
market sites show today's rank; every rank of every snapshot is ours alone."""

from __future__ import annotations

from typing import Literal, cast

import pandas as pd
import streamlit as st

from streamlit_app import data, ui

TOP_CHOICES = (10, 100, 1000)
DIRECTIONS: tuple[tuple[Literal["climbers", "fallers"], str], ...] = (
    ("climbers", "Climbed most"),
    ("fallers", "Fell most"),
)


def coin_names(frame: pd.DataFrame) -> pd.Series:
    return frame["name"].fillna(frame["coin_id"]) + " (" + frame["symbol"].fillna("?") + ")"


def rank_movers() -> None:
    st.subheader("Rank movers")
    horizon = ui.pick_choice("horizon", tuple(data.RANK_HORIZONS), "7d", "Over")
    columns = st.columns(2)
    for column, (direction, title) in zip(columns, DIRECTIONS, strict=True):
        frame = data.rank_movers(horizon, direction)
        column.markdown(f"**{title} ({horizon})**")
        if frame.empty:
            column.info(
                f"No coin that passes the filter below has a rank {horizon} ago to compare "
                f"with (that needs {horizon} of history) and moved that way."
            )
            continue
        table = pd.DataFrame(
            {
                "Coin": coin_names(frame),
                "Rank now": frame["rank"],
                f"Rank {horizon} ago": frame["rank_before"],
                "Places": frame["rank_change"],
                "Page": ui.coin_link(frame["coin_id"]),
            }
        )
        column.dataframe(
            table.style.format({"Places": "{:+,d}"}),
            hide_index=True,
            width="stretch",
            column_config={"Page": ui.COIN_LINK_COLUMN},
        )
        with column:
            ui.download_csv(table.drop(columns="Page"), f"rank-{direction}-{horizon}")
    st.caption(
        ui.plain(
            f"Places climbed (+) or lost (-) since the snapshot {horizon} before the latest, "
            f"among coins with {data.mover_filter().described()}: a supply jump or a dead "
            "market moves a rank for no market reason."
        )
    )


def top_turnover() -> None:
    st.subheader("Entries and exits")
    top_n = cast(int, ui.pick_choice("top", TOP_CHOICES, 100, "Top"))
    range_ = ui.pick_range("1M")
    since, frame = data.top_turnover(top_n, range_)
    if since is None:
        ui.too_few_points(range_, "One ranked moment in this range: nothing to compare.")
        return
    unit = data.BUCKET_UNITS[data.RANGE_SPECS[range_].relation]
    then = (
        f"the snapshot of {pd.Timestamp(since):%Y-%m-%d %H:%M} UTC, the first of the range"
        if unit is None
        else f"the close of the {unit} from {pd.Timestamp(since):%Y-%m-%d %H:%M} UTC (its "
        f"last snapshot), the first {unit} of the range we hold"
    )
    st.caption(f"The top {top_n:,} at the latest snapshot against the top {top_n:,} at {then}.")
    columns = st.columns(2)
    for column, movement, title in zip(
        columns,
        ("entered", "left"),
        (f"Entered the top {top_n:,}", f"Left the top {top_n:,}"),
        strict=True,
    ):
        rows = frame[frame["movement"] == movement] if not frame.empty else frame
        column.markdown(f"**{title}** ({len(rows):,})")
        if rows.empty:
            column.write("None.")
            continue
        table = pd.DataFrame(
            {
                "Coin": coin_names(rows),
                "Rank then": rows["rank_before"],
                "Rank now": rows["rank_now"],
                "Page": ui.coin_link(rows["coin_id"]),
            }
        )
        column.dataframe(
            table, hide_index=True, width="stretch", column_config={"Page": ui.COIN_LINK_COLUMN}
        )
        with column:
            ui.download_csv(table.drop(columns="Page"), f"top-{top_n}-{movement}-{range_}")
    st.caption(
        "Rank now is empty for a coin no longer in the ranking at all; rank then is empty "
        "for one not yet ranked then."
    )


if ui.page_start("Ranks"):
    rank_movers()
    top_turnover()
