"""Every page of the analyst app as the queries it runs, through the app's own data module:
what the app benchmark times and what the tests run on each target."""

from __future__ import annotations

from collections.abc import Callable


def page_queries() -> dict[str, Callable[[], object]]:
    from streamlit_app import data

    def market() -> None:
        data.data_source()
        data.market_summary()
        data.ranking("", 100, 0.0, "Rank")
        data.movers("gainers")
        data.movers("losers")
        data.most_traded()

    def coin(range_: data.Range, quote: data.Quote = data.USD) -> Callable[[], None]:
        def run() -> None:
            data.data_source()
            data.coins()
            data.coin_profile("ethereum")
            data.fiat_quotes()  # the quote picker's currencies
            data.latest_quote(quote)
            data.coin_series("ethereum", range_, quote)
            data.coin_candles("ethereum", range_)  # drawn instead of the line when asked

        return run

    def compare(
        coin_ids: tuple[str, ...], range_: data.Range, quote: data.Quote = data.USD
    ) -> Callable[[], None]:
        def run() -> None:
            data.data_source()
            data.coins()
            data.fiat_quotes()
            data.compare_series(coin_ids, range_, quote)
            data.compare_stats(coin_ids, range_, quote)
            data.correlations(coin_ids, range_, quote)

        return run

    def ranks(horizon: str, range_: data.Range) -> Callable[[], None]:
        def run() -> None:
            data.data_source()
            data.rank_movers(horizon, "climbers")
            data.rank_movers(horizon, "fallers")
            data.top_turnover(100, range_)

        return run

    def health() -> None:
        data.data_source()
        data.pipeline_health()

    def history(range_: data.Range) -> Callable[[], None]:
        def run() -> None:
            data.data_source()
            data.market_history(range_)

        return run

    three = ("bitcoin", "ethereum", "tether")
    eight = (*three, "binance-coin", "cardano", "dogecoin", "xrp", "solana")
    pages = {
        "market": market,
        "compare (3 coins, 1M)": compare(three, "1M"),
        "compare (8 coins, 7D)": compare(eight, "7D"),
        "compare (8 coins, 1Y)": compare(eight, "1Y"),
        # a coin quote joins the quote coin's own rows: the widest of each kind
        "compare (8 coins, 7D, in BTC)": compare(eight, "7D", data.QUOTES["BTC"]),
        "coin 7D (in BTC)": coin("7D", data.QUOTES["BTC"]),
        "coin 3M (in ETH)": coin("3M", data.QUOTES["ETH"]),
        # a fiat quote joins the hourly rates (none on the replay: its SQL runs, on no rows)
        "coin 3M (in EUR)": coin("3M", data.Quote("EUR", fiat=True)),
        "compare (8 coins, 1Y, in EUR)": compare(eight, "1Y", data.Quote("EUR", fiat=True)),
        "ranks (7d, 1M)": ranks("7d", "1M"),
        "ranks (30d, ALL)": ranks("30d", "ALL"),
        "health": health,
    }
    pages.update({f"coin {r}": coin(r) for r in data.RANGES})
    pages.update({f"history {r}": history(r) for r in data.RANGES})
    return pages
