"""Chart builders: pure functions from a DataFrame to an Altair chart, no Streamlit inside,
so each is unit-tested on its own. Data arrive already aggregated to the range's granularity
(see data.RANGE_SPECS); `MAX_POINTS` guards against a chart that would carry too much."""

from __future__ import annotations

import itertools
from typing import Any

import altair as alt
import pandas as pd

MAX_POINTS = 5000  # Altair's own default limit; our ranges stay well under it


def money_axis(unit: str = "USD") -> alt.Axis:
    """$1.2B for dollars, 1.2k BTC for a coin (d3's SI prefixes say G for a billion; money
    says B)."""
    if unit == "USD":
        return alt.Axis(labelExpr="replace(format(datum.value, '$.3~s'), 'G', 'B')")
    return alt.Axis(labelExpr=f"replace(format(datum.value, '.3~s'), 'G', 'B') + ' {unit}'")


MONEY_AXIS = money_axis()
UP, DOWN, NEUTRAL = "#16a34a", "#dc2626", "#2563eb"


class TooManyPoints(ValueError):
    """A chart was handed more rows than a browser should draw."""


def _checked(frame: pd.DataFrame) -> pd.DataFrame:
    if len(frame) > MAX_POINTS:
        raise TooManyPoints(
            f"{len(frame)} rows for one chart (limit {MAX_POINTS}): aggregate first"
        )
    return frame


def _time_axis(title: str = "") -> alt.X:
    return alt.X("observed_at:T", title=title, axis=alt.Axis(labelOverlap=True))


def price_chart(series: pd.DataFrame, unit: str = "USD") -> alt.Chart:
    """Price over time in `unit` (the column `price_<unit>`), coloured by direction over the
    range."""
    frame = _checked(series)
    price = f"price_{unit.lower()}"
    rising = len(frame) < 2 or frame[price].iloc[-1] >= frame[price].iloc[0]
    return (
        alt.Chart(frame, title=f"Price ({unit})")
        .mark_line(color=UP if rising else DOWN)  # straight between samples: no invented moves
        .encode(
            x=_time_axis(),
            y=alt.Y(f"{price}:Q", title=None, scale=alt.Scale(zero=False)),
            tooltip=[
                alt.Tooltip("observed_at:T", title="time"),
                alt.Tooltip(f"{price}:Q", title=f"price ({unit})", format=",.8~g"),
            ],
        )
    )


def market_cap_volume_chart(series: pd.DataFrame, unit: str = "USD") -> alt.LayerChart:
    """Market cap as an area, 24h volume as bars beneath, on their own axes, in `unit`."""
    frame = _checked(series)
    suffix = unit.lower()
    # a coin's cap in BTC is a few thousand: whole units would round a small one to 0
    amount = ",.0f" if unit == "USD" else ",.6~g"
    base = alt.Chart(frame).encode(x=_time_axis())
    cap = base.mark_area(opacity=0.35, color=NEUTRAL).encode(
        y=alt.Y(f"market_cap_{suffix}:Q", title=f"Market cap ({unit})", axis=money_axis(unit)),
        tooltip=[
            alt.Tooltip("observed_at:T", title="time"),
            alt.Tooltip(f"market_cap_{suffix}:Q", title=f"market cap ({unit})", format=amount),
        ],
    )
    volume = base.mark_bar(opacity=0.6, color="#a855f7").encode(
        y=alt.Y(f"volume_{suffix}_24hr:Q", title=f"24h volume ({unit})", axis=money_axis(unit)),
        tooltip=[
            alt.Tooltip("observed_at:T", title="time"),
            alt.Tooltip(f"volume_{suffix}_24hr:Q", title=f"24h volume ({unit})", format=amount),
        ],
    )
    return (
        alt.layer(cap, volume)
        .resolve_scale(y="independent")
        .properties(title="Market cap and 24h volume")
    )


def rank_ticks(worst: int, most: int = 7) -> list[int]:
    """Rank 1, then round steps (1, 2 or 5 times a power of ten) down to the worst rank
    shown: 1, 20, 40 ... or 1, 2, 3. At most `most` ticks whatever the rank (the API may
    send any rank up to 2**31 - 1)."""
    steps = (factor * 10**power for power in itertools.count() for factor in (1, 2, 5))
    step = next(s for s in steps if worst / s < most)
    return [1, *range(step, worst + 1, step)] if step > 1 else list(range(1, worst + 1))


def rank_chart(series: pd.DataFrame, color_by: str | None = None) -> alt.Chart:
    """Rank over time, rank 1 at the top (the dashboard this app replaces never showed it)."""
    frame = _checked(series)
    encoding: dict[str, Any] = {
        "x": _time_axis(),
        "y": alt.Y(
            "rank:Q",
            title="Rank",
            # rank 1 on top, off the frame's edge; the ticks are ranks (a padded scale
            # would tick a rank 0 that no coin has)
            scale=alt.Scale(reverse=True, zero=False, nice=False, domainMin=1, padding=6),
            axis=alt.Axis(format="d", values=rank_ticks(int(frame["rank"].fillna(1).max()))),
        ),
        "tooltip": [alt.Tooltip("observed_at:T", title="time"), alt.Tooltip("rank:Q")],
    }
    mark = alt.Chart(frame, title="Rank by market cap").mark_line(interpolate="step-after")
    if color_by:
        encoding["color"] = series_colour(frame, color_by)
        encoding["tooltip"].append(alt.Tooltip(f"{color_by}:N", title="coin"))
        return mark.encode(**encoding)
    return mark.encode(color=alt.value(NEUTRAL), **encoding)


def series_colour(frame: pd.DataFrame, field: str) -> alt.Color:
    """One colour per series from a palette whose first 8 are far apart (Tableau 10), the
    legend in the order the series were chosen, not alphabetical."""
    order = list(dict.fromkeys(frame[field]))
    return alt.Color(
        f"{field}:N", title=None, sort=order, scale=alt.Scale(scheme="tableau10", domain=order)
    )


def returns_chart(series: pd.DataFrame, unit: str = "USD") -> alt.LayerChart:
    """Each coin's return from the start of the range, on a log axis (a doubling and a
    halving are the same distance) labelled in %. Series are named by `coin` when given."""
    frame = _checked(series)
    name = "coin" if "coin" in frame else "coin_id"
    frame = frame.assign(growth=1 + frame["return_pct"] / 100)
    lines = (
        alt.Chart(frame, title=f"Return in {unit} since the start of the range (log scale)")
        .mark_line()
        .encode(
            x=_time_axis(),
            y=alt.Y(
                "growth:Q",
                title="%",
                # not nice: a log scale rounds its domain out to powers of ten (-90%..+900%)
                scale=alt.Scale(type="log", nice=False, padding=8),
                axis=alt.Axis(labelExpr="format(datum.value - 1, '+.0%')"),
            ),
            color=series_colour(frame, name),
            tooltip=[
                alt.Tooltip(f"{name}:N", title="coin"),
                alt.Tooltip("observed_at:T", title="time"),
                alt.Tooltip("return_pct:Q", title="return %", format="+.2f"),
            ],
        )
    )
    zero = (
        alt.Chart(pd.DataFrame({"y": [1.0]}))
        .mark_rule(strokeDash=[4, 4], color="gray")
        .encode(y="y:Q")
    )
    return alt.layer(lines, zero)


def most_traded_chart(frame: pd.DataFrame) -> alt.Chart:
    """Horizontal bars of 24h volume, largest on top (the old dashboard's 'most traded')."""
    data = _checked(frame).assign(coin=lambda f: f["name"] + " (" + f["symbol"] + ")")
    return (
        alt.Chart(data, title="Most traded by 24h volume")
        .mark_bar(color="#a855f7")
        .encode(
            x=alt.X("volume_usd_24hr:Q", title="24h volume (USD)", axis=MONEY_AXIS),
            y=alt.Y("coin:N", sort="-x", title=None),
            tooltip=[alt.Tooltip("coin:N"), alt.Tooltip("volume_usd_24hr:Q", format=",.0f")],
        )
    )


def snapshots_per_day_chart(per_day: pd.DataFrame) -> alt.Chart:
    """Snapshots per day against what the schedule gives (`expected`: 288 live, 1 replayed);
    short days are amber, days with no snapshot at all are shown as red zeros, never
    interpolated."""
    frame = _checked(per_day).copy()
    if not frame.empty:
        days = pd.date_range(frame["day"].min(), frame["day"].max(), freq="D")
        frame = (
            frame.assign(day=pd.to_datetime(frame["day"]))
            .set_index("day")
            .reindex(days)
            .rename_axis("day")
            .reset_index()
        )
        frame["expected"] = frame["expected"].ffill()
        frame["snapshots"] = frame["snapshots"].fillna(0).astype(int)
    frame["status"] = [
        "missing" if n == 0 else ("complete" if n >= expected else "gaps")
        for n, expected in zip(frame["snapshots"], frame["expected"], strict=True)
    ]
    return (
        alt.Chart(frame, title="Snapshots per day")
        .mark_bar()
        .encode(
            x=alt.X(
                "yearmonthdate(day):O",
                title=None,
                axis=alt.Axis(labelOverlap=True, labelAngle=0, format="%b %d"),
            ),
            y=alt.Y("snapshots:Q", title="snapshots", axis=alt.Axis(format="d", tickMinStep=1)),
            color=alt.Color(
                "status:N",
                scale=alt.Scale(
                    domain=["complete", "gaps", "missing"], range=[UP, "#f59e0b", DOWN]
                ),
                title=None,
            ),
            tooltip=[
                alt.Tooltip("day:T"),
                alt.Tooltip("snapshots:Q"),
                alt.Tooltip("expected:Q"),
                alt.Tooltip("status:N"),
            ],
        )
    )


def _market_tooltip(field: str, title: str, fmt: str) -> list[alt.Tooltip]:
    return [
        alt.Tooltip("observed_at:T", title="time"),
        alt.Tooltip(f"{field}:Q", title=title, format=fmt),
        alt.Tooltip("asset_count:Q", title="coins behind it", format=","),
    ]


def market_totals_chart(history: pd.DataFrame) -> alt.VConcatChart:
    """Total market cap above total 24h volume, each point with the number of coins summed;
    a row of nulls (data.with_gaps) breaks the lines where snapshots are missing."""
    frame = _checked(history)
    base = alt.Chart(frame).encode(x=_time_axis())
    cap = (
        base.mark_line(color=NEUTRAL)
        .encode(
            y=alt.Y(
                "total_market_cap_usd:Q",
                title="Total market cap",
                axis=MONEY_AXIS,
                scale=alt.Scale(zero=False),
            ),
            tooltip=_market_tooltip("total_market_cap_usd", "market cap", "$,.0f"),
        )
        .properties(height=220)
    )
    volume = (
        base.mark_line(color="#a855f7")
        .encode(
            y=alt.Y("total_volume_usd_24hr:Q", title="24h volume", axis=MONEY_AXIS),
            tooltip=_market_tooltip("total_volume_usd_24hr", "24h volume", "$,.0f"),
        )
        .properties(height=160)
    )
    return alt.vconcat(cap, volume).properties(title="The whole market")


DOMINANCE = {
    "btc_dominance_pct": "Bitcoin",
    "eth_dominance_pct": "Ethereum",
    "stablecoin_dominance_pct": "USD stablecoins",
}


def dominance_chart(history: pd.DataFrame) -> alt.Chart:
    """The share of the total cap held by BTC, ETH and the USD stablecoins, one named line
    each (nulls stay nulls: a gap, or a share not measured then)."""
    frame = _checked(history)
    long = frame.melt(
        id_vars=["observed_at", "asset_count"],
        value_vars=list(DOMINANCE),
        var_name="share",
        value_name="pct",
    ).assign(share=lambda f: f["share"].map(DOMINANCE))
    return (
        alt.Chart(long, title="Dominance (% of the total market cap)")
        .mark_line()
        .encode(
            x=_time_axis(),
            y=alt.Y("pct:Q", title="%", scale=alt.Scale(zero=True)),
            color=series_colour(long, "share"),
            tooltip=[
                alt.Tooltip("share:N"),
                alt.Tooltip("observed_at:T", title="time"),
                alt.Tooltip("pct:Q", title="share %", format=".2f"),
                alt.Tooltip("asset_count:Q", title="coins behind it", format=","),
            ],
        )
    )


def candle_chart(candles: pd.DataFrame, title: str) -> alt.LayerChart:
    """Open-high-low-close candles: a wick from low to high, a body from open to close,
    green when the close is at or above the open."""
    frame = _checked(candles).assign(
        direction=lambda f: (f["close_price_usd"] >= f["open_price_usd"]).map(
            {True: "up", False: "down"}
        )
    )
    base = alt.Chart(frame, title=title).encode(
        x=_time_axis(),
        color=alt.Color(
            "direction:N",
            scale=alt.Scale(domain=["up", "down"], range=[UP, DOWN]),
            legend=None,
        ),
        tooltip=[
            alt.Tooltip("observed_at:T", title="opens"),
            *(
                alt.Tooltip(f"{part}_price_usd:Q", title=part, format=",.8~g")
                for part in ("open", "high", "low", "close")
            ),
            alt.Tooltip("snapshot_count:Q", title="prices behind it"),
        ],
    )
    wick = base.mark_rule().encode(
        y=alt.Y("low_price_usd:Q", title=None, scale=alt.Scale(zero=False)),
        y2="high_price_usd:Q",
    )
    body = base.mark_bar().encode(y="open_price_usd:Q", y2="close_price_usd:Q")
    return alt.layer(wick, body)


def correlation_chart(matrix: pd.DataFrame, order: list[str]) -> alt.LayerChart:
    """A heat map of pairwise correlations (-1 red .. +1 blue), each cell labelled, the coins
    in the order chosen. Expects columns coin_a, coin_b (names), correlation, periods."""
    frame = _checked(matrix)
    base = alt.Chart(frame, title="Correlation of returns").encode(
        x=alt.X("coin_a:N", title=None, sort=order),
        y=alt.Y("coin_b:N", title=None, sort=order),
    )
    cells = base.mark_rect().encode(
        color=alt.Color(
            "correlation:Q",
            scale=alt.Scale(scheme="redblue", domain=[-1, 1]),
            title="correlation",
        ),
        tooltip=[
            alt.Tooltip("coin_a:N", title="coin"),
            alt.Tooltip("coin_b:N", title="with"),
            alt.Tooltip("correlation:Q", format="+.2f"),
            alt.Tooltip("periods:Q", title="periods both have"),
        ],
    )
    labels = base.mark_text(baseline="middle").encode(
        text=alt.Text("correlation:Q", format="+.2f"),
        color=alt.condition("abs(datum.correlation) > 0.6", alt.value("white"), alt.value("black")),
    )
    return alt.layer(cells, labels)
