"""Compare: several coins as % return from the start of a range, their ranks, and how they
moved together: volatility, maximum drawdown and the correlation of their returns (computed
in SQL over the hourly or daily rollups, see data.compare_stats)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from streamlit_app import charts, data, ui

MAX_COINS = 8


def statistics(
    chosen: list[str], labels: dict[str, str], range_: data.Range, quote: data.Quote
) -> None:
    """Per-coin risk figures and the correlation matrix, over the same range as the chart."""
    granularity, periods_per_year = data.STATS_RELATIONS[range_]
    period = "hourly" if granularity == "hourly" else "daily"
    stats = data.compare_stats(tuple(chosen), range_, quote)
    if not stats.empty:  # in the order chosen, like the legend
        stats = stats.sort_values("coin_id", key=lambda ids: ids.map(chosen.index))
    if stats.empty or stats["return_count"].max() < 2:
        st.info(f"Too few {period} returns in this range for volatility and correlation.")
        return
    st.subheader("Risk")
    table = pd.DataFrame(
        {
            "Coin": stats["coin_id"].map(labels),
            f"Return in {quote.code} ({period} closes)": stats["total_return_pct"],
            f"Volatility ({period})": stats["volatility_pct"],
            "Volatility (annualised)": stats["annualised_volatility_pct"],
            "Max drawdown": stats["max_drawdown_pct"],
            f"{period.capitalize()} returns": stats["return_count"],
        }
    )
    percents = [c for c in table.columns if c not in ("Coin", f"{period.capitalize()} returns")]
    st.dataframe(
        table.style.format(dict.fromkeys(percents, ui.pct)),
        hide_index=True,
        width="stretch",
    )
    st.caption(
        f"From {period} closes. Volatility is the standard deviation of {period} returns, "
        f"annualised by the square root of {periods_per_year:,} {period} periods a year "
        "(crypto trades around the clock); the maximum drawdown is the deepest fall of a "
        "close below its highest close so far in the range. A return across a missing "
        f"{'hour' if granularity == 'hourly' else 'day'} is left out."
        + (
            f" In {quote.code}: each close divided by {quote.code}'s close of the same "
            f"{'hour' if granularity == 'hourly' else 'day'}, so {quote.code} itself is flat."
            if quote.coin_id is not None
            else f" In {quote.code}: each close divided by {quote.code}'s last `/rates` value "
            f"of the same {'hour' if granularity == 'hourly' else 'day'}."
            if quote.fiat
            else ""
        )
    )
    ui.download_csv(table, f"compare-risk-{range_}-{quote.code.lower()}")
    if len(chosen) < 2:
        return
    matrix = data.correlations(tuple(chosen), range_, quote)
    if matrix.empty:
        st.info(f"No {period} returns in common to correlate in this range.")
        return
    named = matrix.assign(coin_a=matrix["coin_a"].map(labels), coin_b=matrix["coin_b"].map(labels))
    order = [labels[c] for c in chosen]
    st.altair_chart(charts.correlation_chart(named, order), width="stretch")
    st.caption(
        f"Pearson correlation of {period} returns over the {period} periods both coins have "
        "(hover a cell for the count): +1 moved together, 0 unrelated, -1 opposite"
        + (
            f"; {quote.code} is flat in {quote.code}, so its cells are empty."
            if quote.coin_id in chosen
            else "."
        )
    )
    ui.download_csv(named, f"compare-correlation-{range_}-{quote.code.lower()}")


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
    quote = ui.pick_quote()
    if not chosen:
        st.info("Pick one or more coins to compare.")
    else:
        series, every = data.thinned(
            data.compare_series(tuple(chosen), range_, quote), charts.MAX_POINTS
        )
        # named in the legend, in the order chosen (names are data: Vega draws them as text)
        series["coin"] = series["coin_id"].map(labels)
        series = series.sort_values("coin_id", key=lambda ids: ids.map(chosen.index), kind="stable")
        if series.groupby("coin_id").size().max() < 2 if not series.empty else True:
            ui.too_few_points(range_, "Not enough history in this range to compare.")
        else:
            st.altair_chart(charts.returns_chart(series, quote.code), width="stretch")
            st.altair_chart(charts.rank_chart(series, color_by="coin"), width="stretch")
            points = ui.spacing(series["observed_at"], data.COMPARE_SPECS[range_].granularity)
            st.caption(
                f"{points.capitalize()}; each line starts at 0% at its coin's first point in "
                "the range."
                + (
                    f" One point in {every} is drawn (a chart carries at most "
                    f"{charts.MAX_POINTS:,}); the figures below use every one."
                    if every > 1
                    else ""
                )
            )
            price = data.quote_columns(quote)["price"]
            ui.download_csv(
                series[["observed_at", "coin_id", "coin", price, "rank", "return_pct"]],
                f"compare-{range_}-{quote.code.lower()}",
            )
            statistics(chosen, labels, range_, quote)
