"""Market: the global bar, the ranking with sparklines, movers and most traded."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
import streamlit as st

from streamlit_app import charts, data, ui

TOP_N_CHOICES = (10, 50, 100, 250, 500, 1000, 2000)
CHANGE_COLUMNS = ("1h %", "24h %", "7d %")


def _delta(now: dict, before: dict | None, key: str, kind: str) -> str | None:
    if before is None or now.get(key) is None or before.get(key) is None:
        return None
    if kind == "pct_points":
        return f"{now[key] - before[key]:+.2f} pts"
    if kind == "count":
        return f"{int(now[key] - before[key]):+d}"
    return f"{100 * (now[key] - before[key]) / before[key]:+.2f}%"


def global_bar() -> None:
    summary = data.market_summary()
    now, before = summary["now"], summary["day_before"]
    cols = st.columns(4)
    cols[0].metric(
        "Total market cap",
        ui.usd(now["total_market_cap_usd"]),
        _delta(now, before, "total_market_cap_usd", "relative"),
    )
    cols[1].metric(
        "24h volume",
        ui.usd(now["total_volume_usd_24hr"]),
        _delta(now, before, "total_volume_usd_24hr", "relative"),
    )
    dominance = now["btc_dominance_pct"]
    cols[2].metric(
        "BTC dominance",
        "n/a" if pd.isna(dominance) else f"{dominance:.1f}%",
        _delta(now, before, "btc_dominance_pct", "pct_points"),
        delta_color="off",
    )
    cols[3].metric(
        "Assets",
        f"{now['asset_count']:,}",
        _delta(now, before, "asset_count", "count"),
        delta_color="off",
    )
    latest = pd.Timestamp(now["snapshot_at"]).strftime("%Y-%m-%d %H:%M UTC")
    note = "" if before is not None else " Changes since 24h ago appear after 24 hours of history."
    st.caption(f"Latest snapshot: **{latest}** ({ui.age(now['snapshot_at'])}).{note}")


def _colour(change: float) -> str:
    """Green up, red down, grey for no move (what ui.pct shows as an unsigned 0.00%)."""
    if pd.isna(change) or round(change, 2) == 0:
        return "color: gray"
    return "color: #16a34a" if change > 0 else "color: #dc2626"


NUMBER_FORMATS = {
    "Price": ui.price,
    "Market cap": ui.usd,
    "Volume (24h)": ui.usd,
    "Supply": "{:,.0f}",
}


def _styled(table: pd.DataFrame) -> Any:
    """Numbers stay numbers (a header click sorts them as such); the Styler only shows them
    as the rest of the app writes them, with changes coloured."""
    changes = [column for column in CHANGE_COLUMNS if column in table]
    formats = {k: v for k, v in NUMBER_FORMATS.items() if k in table}
    return table.style.map(_colour, subset=changes).format(
        {**formats, **dict.fromkeys(changes, ui.pct)}
    )


def ranking_table() -> None:
    search_col, top_col, cap_col, sort_col = st.columns([3, 1, 2, 2])
    search = search_col.text_input("Search", placeholder="name or symbol, e.g. sol", key="search")
    top_n = top_col.selectbox("Top", TOP_N_CHOICES, index=2, key="top_n")
    min_cap = cap_col.number_input(
        "Min market cap (USD)", min_value=0.0, value=0.0, step=1e6, format="%.0f", key="min_cap"
    )
    sort = sort_col.selectbox("Sort by", list(data.SORTS), key="sort")
    frame = data.ranking(search, top_n, min_cap, sort)
    if frame.empty:
        st.info("No coin matches these filters.")
        return
    table = pd.DataFrame(
        {
            "#": frame["rank"],
            "Coin": frame["name"] + " (" + frame["symbol"] + ")",
            "Price": frame["price_usd"],
            # numbers, so a click on the header sorts by the change (the Styler shows ui.pct)
            "1h %": frame["change_1h_pct"],
            "24h %": frame["change_24h_pct"],
            "7d %": frame["change_7d_pct"],
            "Market cap": frame["market_cap_usd"],
            "Volume (24h)": frame["volume_usd_24hr"],
            "Supply": frame["supply"],
            # one point is no line (Streamlit would draw it flat on the cell's border)
            "Last 7 days": frame["sparkline_7d"].map(
                # a null list comes back as pd.NA, not None
                lambda prices: list(prices) if _is_list(prices) and len(prices) >= 2 else []
            ),
        }
    )
    replay = ui.replaying()
    if replay:  # one snapshot a day: a column that could never fill is not shown
        table = table.drop(columns=["1h %"])
    changes = [column for column in CHANGE_COLUMNS if column in table]
    st.dataframe(
        _styled(table),
        hide_index=True,
        width="stretch",
        column_config={
            "#": st.column_config.NumberColumn(width="small"),
            "Last 7 days": st.column_config.LineChartColumn(width="medium", color="auto"),
        },
    )
    csv_column, parquet_column = st.columns([1, 5])
    with csv_column:
        ui.download_csv(frame.drop(columns="sparkline_7d"), "ranking")
    with parquet_column:
        ui.download(
            ranking_parquet(frame),
            "ranking.parquet",
            "application/vnd.apache.parquet",
            "Download Parquet",
        )
    st.caption(
        f"{len(frame):,} coins. {'/'.join(c.removesuffix(' %') for c in changes)} changes come "
        "from our own history; a faded None means the history is too short for that horizon."
        + (f" {ui.REPLAY_HAS_NO_INTRADAY}" if replay else "")
    )


def _is_list(value: object) -> bool:
    return isinstance(value, list | tuple | np.ndarray)


def ranking_parquet(frame: pd.DataFrame) -> bytes:
    """The ranking as shown (filters, sort), typed, with its 7-day prices as a list column."""
    return frame.assign(
        sparkline_7d=frame["sparkline_7d"].map(lambda p: list(p) if _is_list(p) else None)
    ).to_parquet(index=False)


def movers_tables() -> None:
    left, right = st.columns(2)
    directions: tuple[tuple[Any, Literal["gainers", "losers"], str], ...] = (
        (left, "gainers", "Top 10 gainers (24h)"),
        (right, "losers", "Top 10 losers (24h)"),
    )
    for column, direction, title in directions:
        frame = data.movers(direction)
        column.subheader(title)
        if frame.empty:
            column.info("No coin passes the filter below yet (it needs a day of history).")
            continue
        column.dataframe(
            _styled(
                pd.DataFrame(
                    {
                        "Coin": frame["name"] + " (" + frame["symbol"] + ")",
                        "Price": frame["price_usd"],
                        "24h %": frame["change_24h_pct"],
                        "Volume (24h)": frame["volume_usd_24hr"],
                    }
                )
            ),
            hide_index=True,
            width="stretch",
        )
        with column:
            ui.download_csv(frame, f"movers-{direction}")
    st.caption(  # plain: "$100,000 ... $1,000,000" would be LaTeX between two $ signs
        ui.plain(
            f"Movers: coins with {data.mover_filter().described()} (a coin page lists its "
            "flags). Set CRYPTOLYTICS_MOVERS_MIN_VOLUME_USD and _MIN_MARKET_CAP_USD to change."
        )
    )


if ui.page_start("Market"):
    global_bar()
    ranking_table()
    movers_tables()
    traded = data.most_traded()
    if not traded.empty:
        st.altair_chart(charts.most_traded_chart(traded), width="stretch")
        ui.download_csv(traded, "most-traded")
