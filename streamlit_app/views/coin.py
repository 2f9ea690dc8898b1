"""Coin: price, market cap and volume, rank over time, supply, extremes, explorer."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from streamlit_app import charts, data, ui

CHART_STYLES = ("Line", "Candles")


def pick_coin() -> str | None:
    coins = data.coins()
    if coins.empty:
        return None
    labels = {row.coin_id: f"{row.name} ({row.symbol})" for row in coins.itertuples()}
    wanted = ui.query_param("coin", "bitcoin")
    options = list(labels)
    if wanted not in labels:
        fallback = "bitcoin" if "bitcoin" in labels else options[0]
        ui.link_notice(
            f"The link's coin “{ui.plain(wanted[:40])}” is not one we hold: showing "
            f"{ui.plain(labels[fallback])}."
        )
        wanted = fallback
    index = options.index(wanted)
    coin_id = st.selectbox("Coin", options, index=index, format_func=labels.__getitem__, key="coin")
    st.query_params["coin"] = coin_id
    return coin_id


def in_quote(profile: dict, quote: data.Quote) -> dict:
    """The headline's price, 24h change, cap and volume in `quote`: each USD figure divided by
    the quote coin's latest price, the change compounded against the quote coin's own (a
    coin up 10% while BTC is up 10% is flat in BTC). None: the quote coin has no price now."""
    figures = ("price_usd", "change_24h_pct", "market_cap_usd", "volume_usd_24hr")
    if not quote.converted:
        return {field: profile[field] for field in figures}
    reference = data.latest_quote(quote)
    if reference is None:
        return dict.fromkeys(figures)
    divisor, reference_change = reference["price_usd"], reference["change_24h_pct"]
    change = profile["change_24h_pct"]
    return {
        "price_usd": profile["price_usd"] / divisor,
        "change_24h_pct": None
        if pd.isna(change) or pd.isna(reference_change)
        else 100 * ((1 + change / 100) / (1 + reference_change / 100) - 1),
        "market_cap_usd": profile["market_cap_usd"] / divisor,
        "volume_usd_24hr": profile["volume_usd_24hr"] / divisor,
    }


def headline(profile: dict, quote: data.Quote) -> None:
    cols = st.columns(4)
    if pd.isna(profile.get("rank")):
        st.info(
            f"{ui.plain(profile['name'])} is not in the latest ranking: it left the top coins "
            "we track. "
            f"Last seen {pd.Timestamp(profile['last_seen_at']):%Y-%m-%d %H:%M} UTC; "
            "its history stays below."
        )
        return
    shown = in_quote(profile, quote)
    change = shown["change_24h_pct"]
    cols[0].metric(
        "Price",
        ui.price(shown["price_usd"], quote.code),
        ui.pct(change) if change is not None and not pd.isna(change) else None,
    )
    cols[1].metric("Rank", f"#{int(profile['rank'])}")
    cols[2].metric("Market cap", ui.money(shown["market_cap_usd"], quote.code))
    cols[3].metric("Volume (24h)", ui.money(shown["volume_usd_24hr"], quote.code))


QUALITY_FLAGS = {
    "flag_no_volume": "its 24h volume is $0: nobody traded it, so its price is not a market price",
    "flag_volume_unknown": "the source gives no 24h volume for it, so nothing says it trades",
    "flag_price_without_market_cap": "its price moved 50% or more in 24 h while its market "
    "cap moved less than 5%: a source error or a redenomination more likely than a move",
    "flag_supply_jump": "its supply changed by more than 50% in 24 h (an unlock, a "
    "redenomination or a source error): its market cap and rank did not move with the market",
    "flag_implausible_move": "its price moved more than 1,000% in 24 h: check it against "
    "another source before reading it as a move",
}


def quality_flags(profile: dict) -> None:
    """What the models flag in the latest snapshot (movers leave flagged coins out)."""
    raised = [text for flag, text in QUALITY_FLAGS.items() if profile.get(flag) is True]
    if raised:
        st.warning(
            "**Data-quality flags** in the latest snapshot: " + ui.plain("; ".join(raised)) + ". "
            "It is left out of the movers.",
            icon=":material/flag:",
        )


def supply_and_extremes(profile: dict) -> None:
    left, right = st.columns(2)
    with left:
        st.subheader("Supply")
        supply, max_supply = profile["supply"], profile["max_supply"]
        if pd.isna(supply):
            st.write("CoinCap gives no circulating supply for this coin.")
        elif pd.isna(max_supply):
            st.write(
                f"{supply:,.0f} {ui.plain(profile['symbol'])} in circulation; CoinCap gives "
                "no maximum supply."
            )
        else:
            share = min(max(supply / max_supply, 0.0), 1.0)  # a negative supply is data too
            st.progress(
                share,
                text=f"{supply:,.0f} of {max_supply:,.0f} {ui.plain(profile['symbol'])} "
                f"({share:.1%})",
            )
    with right:
        st.subheader("All-time high and low (USD, our data)")
        if pd.isna(profile.get("ath_price_usd")):
            st.write("Not enough history yet.")
        else:
            current = profile.get("price_usd")
            for label, value, at in (
                ("High", profile["ath_price_usd"], profile["ath_at"]),
                ("Low", profile["atl_price_usd"], profile["atl_at"]),
            ):
                distance = (
                    ""
                    if pd.isna(current)
                    else f", now {ui.pct(100 * (current - value) / value)} from it"
                )
                st.write(f"**{label}** {ui.price(value)} on {pd.Timestamp(at):%Y-%m-%d}{distance}")
            st.caption(f"Within the {int(profile['days_seen'])} day(s) of history we hold.")
    explorer = profile.get("explorer")
    if isinstance(explorer, str) and explorer.startswith(("https://", "http://")):
        st.link_button("Open in block explorer", explorer)  # never a javascript: link
    elif ui.replaying():
        st.caption("The replayed data carry no block explorer links.")
    else:
        st.caption("CoinCap lists no block explorer for this coin.")


def candles(coin_id: str, range_: data.Range, quote: data.Quote) -> bool:
    """Candles in place of the price line; False (said on the page) when the range's buckets
    hold one price each, as on the daily replay, where a candle would be a flat dash."""
    if quote.converted:
        # a coin's high in BTC is not its USD high over BTC's: the two need not fall on the
        # same snapshot, and the rollups keep each coin's own extremes only
        why = (
            f"an hour's high in {quote.code} is not the USD high over {quote.code}'s, and the "
            "rollups keep each coin's own extremes"
            if quote.coin_id is not None
            else f"a high in {quote.code} needs the rate at the moment of the high, and "
            "the rates are kept by the hour"
        )
        st.info(
            f"Candles are drawn in USD only: {why}. The line below is in {quote.code}.",
            icon=":material/candlestick_chart:",
        )
        return False
    frame = data.coin_candles(coin_id, range_)
    unit = data.BUCKET_UNITS[data.CANDLE_RELATIONS[range_]]
    if not data.candles_supported(frame):
        st.info(
            f"Candles need several prices a {unit}: "
            + (
                "the daily replay has one snapshot a day, so it has none to draw (a live "
                "source takes one every 5 minutes). "
                if ui.replaying()
                else "this range holds one price or fewer in most of its buckets. "
            )
            + "The line below shows the prices there are.",
            icon=":material/candlestick_chart:",
        )
        return False
    title = f"Price (USD), {'hourly' if unit == 'hour' else 'daily'} candles"
    st.altair_chart(charts.candle_chart(frame, title), width="stretch")
    ui.download_csv(frame, f"{coin_id}-candles-{range_}")
    return True


def charts_for(coin_id: str, range_: data.Range, style: str, quote: data.Quote) -> None:
    series = data.coin_series(coin_id, range_, quote)
    spec = data.RANGE_SPECS[range_]
    if len(series) < 2:
        ui.too_few_points(
            range_,
            f"{'One snapshot' if len(series) == 1 else 'No data'} in this range: "
            "a chart needs two.",
        )
        return
    if style != "Candles" or not candles(coin_id, range_, quote):
        st.altair_chart(charts.price_chart(series, quote.code), width="stretch")
    st.altair_chart(charts.market_cap_volume_chart(series, quote.code), width="stretch")
    st.altair_chart(charts.rank_chart(series), width="stretch")
    st.caption(
        f"{len(series):,} points: {ui.spacing(series['observed_at'], spec.granularity)}."
        + quote_note(quote, spec.relation)
    )
    ui.download_csv(series, f"{coin_id}-{range_}-{quote.code.lower()}")


def quote_note(quote: data.Quote, relation: str) -> str:
    """How a figure in a coin quote was made, for the caption (nothing for USD)."""
    if not quote.converted:
        return ""
    if quote.fiat:
        unit = data.BUCKET_UNITS[relation] or "hour"
        return (
            f" In {quote.code}: each USD figure divided by {quote.code}'s USD rate from "
            f"CoinCap's `/rates`, the last of the same {unit}."
        )
    moment = "snapshot" if relation == "facts" else f"{data.BUCKET_UNITS[relation]}'s close"
    return (
        f" In {quote.code}: each USD figure divided by {quote.code}'s USD price at the same "
        f"{moment}, from our own snapshots."
    )


if ui.page_start("Coin"):
    coin_id = pick_coin()
    range_ = ui.pick_range("7D")
    style = ui.pick_choice("chart", CHART_STYLES, "Line", "Price as")
    quote = ui.pick_quote()
    profile = data.coin_profile(coin_id) if coin_id else None
    if coin_id is None or profile is None:
        st.info("Pick a coin.")
    else:
        st.header(f"{ui.plain(profile['name'])} ({ui.plain(profile['symbol'])})")
        headline(profile, quote)
        quality_flags(profile)
        charts_for(coin_id, range_, style, quote)
        supply_and_extremes(profile)
