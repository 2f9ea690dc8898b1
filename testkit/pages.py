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

    def coin(range_: data.Range) -> Callable[[], None]:
        def run() -> None:
            data.data_source()
            data.coins()
            data.coin_profile("ethereum")
            data.coin_series("ethereum", range_)

        return run

    def compare() -> None:
        data.data_source()
        data.coins()
        data.compare_series(("bitcoin", "ethereum", "tether"), "1M")

    def health() -> None:
        data.data_source()
        data.pipeline_health()

    def history(range_: data.Range) -> Callable[[], None]:
        def run() -> None:
            data.data_source()
            data.market_history(range_)

        return run

    pages = {"market": market, "compare (3 coins, 1M)": compare, "health": health}
    pages.update({f"coin {r}": coin(r) for r in data.RANGES})
    pages.update({f"history {r}": history(r) for r in data.RANGES})
    return pages
