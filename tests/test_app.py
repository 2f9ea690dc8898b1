"""Every page with Streamlit's AppTest, on warehouses built from real data, asserting on what
an analyst sees: numbers, rows, banners, empty states."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import streamlit as st
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st_
from streamlit.testing.v1 import AppTest

from flows.core.settings import Settings
from streamlit_app import ui
from testkit.pipeline import replay_bodies, tick
from tests.conftest import RECORDED_TIMESTAMP, body_variant

pytestmark = pytest.mark.integration

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app" / "app.py")
REPLAY_DAYS = 9


def _env(root: Path) -> dict[str, str]:
    return {
        "CRYPTOLYTICS_LAKE_URL": str(root / "lake"),
        "CRYPTOLYTICS_DUCKDB_PATH": str(root / "warehouse.duckdb"),
        "CRYPTOLYTICS_SERVING_DIR": str(root / "serving"),
        "CRYPTOLYTICS_COINCAP_API_KEY": "",
    }


@pytest.fixture(scope="module")
def replay_days() -> list[tuple[int, bytes]]:
    return replay_bodies(REPLAY_DAYS)


@pytest.fixture(scope="module")
def replay_root(tmp_path_factory: pytest.TempPathFactory, replay_days) -> Path:
    """Nine real replay days (up to 2,000 coins each), built in two pipeline ticks."""
    root = tmp_path_factory.mktemp("replay")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in _env(root).items():
            patch.setenv(key, value)
        settings = Settings()
        tick(settings, [("replay", ts, body) for ts, body in replay_days[:-1]])
        tick(settings, [("replay", *replay_days[-1])])
    return root


@pytest.fixture(scope="module")
def live_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recorded CoinCap snapshot at three times, as live data."""
    root = tmp_path_factory.mktemp("live")
    raw = (
        Path(__file__).parent / "fixtures/coincap/v3_assets_2025-03-16T183431Z.json"
    ).read_bytes()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in _env(root).items():
            patch.setenv(key, value)
        snapshots = [
            (
                "coincap",
                RECORDED_TIMESTAMP + i * 300_000,
                body_variant(
                    raw, timestamp_ms=RECORDED_TIMESTAMP + i * 300_000, price_factor=1 + i / 100
                ),
            )
            for i in range(3)
        ]
        tick(Settings(), snapshots)
    return root


def use(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in _env(root).items():
        monkeypatch.setenv(key, value)
    st.cache_data.clear()  # results of another warehouse must not leak in


@pytest.fixture
def replay_app(replay_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    use(replay_root, monkeypatch)
    yield
    st.cache_data.clear()


@pytest.fixture
def live_app(live_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    use(live_root, monkeypatch)
    yield
    st.cache_data.clear()


def run(page: str | None = None, **query: str) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=60)
    if page:
        app.switch_page(f"views/{page}.py")
    for key, value in query.items():
        app.query_params[key] = value
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def assets_of(body: bytes) -> dict[str, dict]:
    return {asset["id"]: asset for asset in json.loads(body)["data"]}


def texts(app: AppTest, kind: str) -> str:
    return " ".join(str(element.value) for element in getattr(app, kind))


@pytest.mark.usefixtures("replay_app")
def test_market_page_shows_the_latest_totals_and_says_replay(replay_days) -> None:
    app = run()
    latest = assets_of(replay_days[-1][1])
    total_cap = sum(float(a["marketCapUsd"]) for a in latest.values())

    assert "Replay, not live data" in texts(app, "warning")
    assert "2021-01-01 to 2021-01-09" in texts(app, "warning")
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Total market cap"] == ui.usd(total_cap)
    assert metrics["Assets"] == f"{len(latest):,}"
    ranking, gainers, losers = (frame.value for frame in app.dataframe)
    assert len(ranking) == 100
    assert ranking["Coin"].iloc[0] == "Bitcoin (BTC)"
    # numbers, so the header sorts them as numbers; nine days of history fill the 7d change
    assert ranking["24h %"].dtype == ranking["7d %"].dtype == "float64"
    assert ranking["7d %"].notna().iloc[0]
    # the daily replay can never fill a 1h change: no column promises one, and the page says why
    assert "1h %" not in ranking
    assert ui.REPLAY_HAS_NO_INTRADAY in texts(app, "caption")
    assert (len(gainers), len(losers)) == (10, 10)
    assert gainers["24h %"].is_monotonic_decreasing and losers["24h %"].is_monotonic_increasing
    assert len(app.get("vega_lite_chart")) == 1  # most traded
    # the ranking as CSV and Parquet, each movers table, the most-traded chart
    assert download_names(app) == ["Download CSV", "Download Parquet", *["Download CSV"] * 3]


@pytest.mark.usefixtures("replay_app")
def test_movers_are_liquid_unflagged_coins_and_the_page_says_so(replay_days) -> None:
    """The replay holds coins with $0 of volume and jumps without a market-cap move; the
    movers are only coins the filter lets through, as the market sites show theirs."""
    from streamlit_app import data

    latest = assets_of(replay_days[-1][1])
    illiquid = [c for c, a in latest.items() if float(a.get("volumeUsd24Hr") or 0) < 100_000]
    assert illiquid  # the filter has something to do
    for direction in ("gainers", "losers"):
        movers = data.movers(direction)
        assert len(movers) == 10
        assert (movers["volume_usd_24hr"] >= 100_000).all(), direction
        assert (movers["market_cap_usd"] >= 1_000_000).all(), direction
        assert not set(movers["coin_id"]) & set(illiquid)
    # the last replayed day has liquid coins whose supply jumped: every mover passes the
    # floors, so only the flag keeps them out
    flagged = set(
        data.reader().query(
            "select coin_id from prod.mart_latest_ranking where has_quality_flag "
            "and volume_usd_24hr >= 100000 and market_cap_usd >= 1000000"
        )["coin_id"]
    )
    assert flagged
    everyone = set(data.movers("gainers", limit=2000)["coin_id"])
    assert everyone and flagged.isdisjoint(everyone)
    captions = texts(run(), "caption")
    assert ui.plain("Movers: coins with at least $100,000 of 24h volume and $1,000,000") in captions
    assert not re.search(r"(?<!\\)\$", captions)  # two bare $ would make LaTeX of the text

    # a coin nobody traded and a coin whose supply jumped say so on their pages
    untraded = next(c for c, a in latest.items() if float(a.get("volumeUsd24Hr") or 0) == 0)
    assert "nobody traded it, so its price is not a market price" in texts(
        run("coin", coin=untraded), "warning"
    )
    jumped = (
        data.reader()
        .query(
            "select min(coin_id) as coin_id from prod.mart_latest_ranking where flag_supply_jump"
        )["coin_id"]
        .iat[0]
    )
    assert "its supply changed by more than 50% in 24 h" in texts(
        run("coin", coin=jumped), "warning"
    )
    assert "Data-quality flags" not in texts(run("coin", coin="bitcoin"), "warning")


@pytest.mark.usefixtures("replay_app")
def test_search_filters_and_hostile_input_is_just_text() -> None:
    app = run()
    app.text_input(key="search").input("ether").run()
    coins = app.dataframe[0].value["Coin"].tolist()
    assert "Ethereum (ETH)" in coins
    assert all("ether" in c.lower() for c in coins)

    app.text_input(key="search").input("'; drop table prod.facts_coins; --").run()
    assert not app.exception
    assert "No coin matches these filters." in texts(app, "info")
    app.text_input(key="search").input("_").run()  # a LIKE wildcard is literal: no name has "_"
    assert "No coin matches these filters." in texts(app, "info")


@pytest.mark.usefixtures("replay_app")
def test_coin_page_reads_its_state_from_the_url(replay_days) -> None:
    app = run("coin", coin="ethereum", range="ALL")
    price = float(assets_of(replay_days[-1][1])["ethereum"]["priceUsd"])

    assert [h.value for h in app.header] == ["Ethereum (ETH)"]
    assert {m.label: m.value for m in app.metric}["Price"] == ui.price(price)
    assert len(app.get("vega_lite_chart")) == 3  # price, cap + volume, rank
    assert f"{REPLAY_DAYS} points: daily closes." in texts(app, "caption")
    assert "no maximum supply" in " ".join(m.value for m in app.markdown)
    assert "The replayed data carry no block explorer links." in texts(app, "caption")
    assert dict(app.query_params) == {
        "coin": "ethereum",
        "range": "ALL",
        "chart": "Line",
        "quote": "USD",
    }
    week = run("coin", coin="ethereum", range="7D")  # 5-minute facts, but the replay is daily
    assert "points: one point a day (the data hold no finer one here)." in texts(week, "caption")
    day = run("coin", coin="ethereum", range="1D")  # never fills on the replay: said so
    assert ui.REPLAY_HAS_NO_INTRADAY in texts(day, "info")
    assert "come back after a few more pipeline runs" not in texts(day, "info")


@pytest.mark.usefixtures("replay_app")
def test_a_coin_that_left_the_ranking_and_a_coin_seen_once(replay_days) -> None:
    before, latest = assets_of(replay_days[-2][1]), assets_of(replay_days[-1][1])
    left = next(c for c in before if c not in latest)
    newcomer = next(c for c in latest if all(c not in assets_of(b) for _, b in replay_days[:-1]))

    app = run("coin", coin=left, range="ALL")
    assert "is not in the latest ranking" in texts(app, "info")
    assert len(app.get("vega_lite_chart")) == 3  # its history still shows

    app = run("coin", coin=newcomer, range="ALL")
    assert "One snapshot in this range" in texts(app, "info")
    assert len(app.get("vega_lite_chart")) == 0


@pytest.mark.usefixtures("live_app")
def test_live_coin_with_max_supply_and_explorer() -> None:
    app = run("coin", coin="bitcoin", range="1D")
    assert not app.warning  # live data: no replay banner
    assert "of 21,000,000 BTC" in app.get("progress")[0].proto.text
    assert app.get("link_button")[0].proto.url == "https://blockchain.info/"
    assert "3 points: 5-minute snapshots." in texts(app, "caption")
    ranking = run().dataframe[0].value
    assert ranking["1h %"].dtype == "float64"  # live: the 1h column is there, as numbers


@pytest.mark.usefixtures("replay_app")
def test_market_history_charts_the_whole_market_from_our_snapshots(replay_days) -> None:
    """Every replayed day is a point; the shares are the day's caps over its total (BTC, ETH,
    the USD stablecoins of dbt's var), with the number of coins behind each point."""
    import yaml

    from flows.core.settings import PROJECT_ROOT
    from streamlit_app import data

    stable = set(
        yaml.safe_load((PROJECT_ROOT / "dbt" / "dbt_project.yml").read_text())["vars"][
            "stablecoin_ids"
        ]
    )
    history = data.market_history("ALL")
    assert len(history) == REPLAY_DAYS and not history["total_market_cap_usd"].isna().any()
    latest = assets_of(replay_days[-1][1])
    caps = {c: float(a["marketCapUsd"]) for c, a in latest.items() if a.get("marketCapUsd")}
    last = history.iloc[-1]
    assert last["asset_count"] == len(latest)
    assert last["total_market_cap_usd"] == pytest.approx(sum(caps.values()))
    assert last["btc_dominance_pct"] == pytest.approx(100 * caps["bitcoin"] / sum(caps.values()))
    stable_cap = sum(cap for coin, cap in caps.items() if coin in stable)
    assert stable_cap > 0
    assert last["stablecoin_dominance_pct"] == pytest.approx(100 * stable_cap / sum(caps.values()))

    app = run("history", range="ALL")
    assert len(app.get("vega_lite_chart")) == 2
    assert f"{REPLAY_DAYS} points" in texts(app, "caption")
    assert "coins behind each point" in texts(app, "caption")
    assert download_names(app) == ["Download CSV"]
    day = run("history", range="1D")
    assert ui.REPLAY_HAS_NO_INTRADAY in texts(day, "info")


@pytest.mark.usefixtures("replay_app")
def test_compare_page_charts_returns_and_ranks() -> None:
    app = run("compare", coins="bitcoin,ethereum,tether", range="ALL")
    assert app.multiselect(key="coins").value == ["bitcoin", "ethereum", "tether"]
    specs = [chart.proto.spec for chart in app.get("vega_lite_chart")]
    assert len(specs) == 3  # returns, ranks, then the correlation matrix
    assert "return_pct" in specs[0] and '"reverse": true' in specs[1]

    app.multiselect(key="coins").set_value([]).run()
    assert "Pick one or more coins to compare." in texts(app, "info")


def download_names(app: AppTest) -> list[str]:
    """The labels of the page's download buttons (AppTest has no typed element; the
    browser test saves a file and reads it back)."""
    return [element.proto.label for element in app.get("download_button")]


@pytest.mark.usefixtures("replay_app")
def test_ranks_page_climbers_fallers_entries_and_exits_from_the_snapshots(replay_days) -> None:
    """Checked against the replayed bodies themselves: ranks 7 days apart, and the top 100
    of the first replayed day against the latest."""
    from streamlit_app import data

    first, week_ago, latest = (
        {c: int(a["rank"]) for c, a in assets_of(body).items()}
        for body in (replay_days[0][1], replay_days[-8][1], replay_days[-1][1])
    )
    climbers = data.rank_movers("7d", "climbers")
    fallers = data.rank_movers("7d", "fallers")
    assert len(climbers) == 10 and len(fallers) == 10
    for frame in (climbers, fallers):
        for row in frame.itertuples():
            assert (row.rank_before, row.rank) == (week_ago[row.coin_id], latest[row.coin_id])
            assert row.rank_change == week_ago[row.coin_id] - latest[row.coin_id]
    assert list(climbers["rank_change"]) == sorted(climbers["rank_change"], reverse=True)
    assert (climbers["rank_change"] > 0).all() and (fallers["rank_change"] < 0).all()

    since, turnover = data.top_turnover(100, "ALL")
    first_day = datetime.fromtimestamp(replay_days[0][0] / 1000, UTC).replace(tzinfo=None)
    assert since == first_day.replace(hour=0, minute=0, second=0, microsecond=0)
    top_then = {c for c, r in first.items() if r <= 100}
    top_now = {c for c, r in latest.items() if r <= 100}
    moved = turnover.groupby("movement")["coin_id"].apply(set).to_dict()
    assert moved == {"entered": top_now - top_then, "left": top_then - top_now}
    assert moved["entered"] and moved["left"]  # nine days of 2021 did move the top 100

    app = run("ranks", horizon="7d", top="100", range="ALL")
    frames = [element.value for element in app.dataframe]
    assert len(frames) == 4  # climbers, fallers, entered, left
    assert frames[0]["Page"].iloc[0] == f"coin?coin={climbers['coin_id'].iat[0]}"
    assert "among coins with at least $100,000" in texts(app, "caption").replace("\\$", "$")
    assert download_names(app) == ["Download CSV"] * 4
    bad = run("ranks", horizon="1y", top="7")
    said = texts(bad, "info")
    assert "horizon “1y” is not one of 24h, 7d, 30d" in said and "top “7” is not one of" in said


@pytest.fixture(scope="module")
def live_hours_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes]]:
    """Thirty live snapshots, 5 minutes apart (18:34 to 21:00 UTC): three hourly candles."""
    root = tmp_path_factory.mktemp("live-hours")
    raw = (
        Path(__file__).parent / "fixtures/coincap/v3_assets_2025-03-16T183431Z.json"
    ).read_bytes()
    bodies = [
        body_variant(
            raw,
            timestamp_ms=RECORDED_TIMESTAMP + i * 300_000,
            price_factor=1 + ((i * 7) % 5 - 2) / 100,
        )
        for i in range(30)
    ]
    with pytest.MonkeyPatch.context() as patch:
        for key, value in _env(root).items():
            patch.setenv(key, value)
        tick(
            Settings(),
            [("coincap", RECORDED_TIMESTAMP + i * 300_000, b) for i, b in enumerate(bodies)],
        )
    return root, bodies


def test_candles_are_the_hours_open_high_low_close_and_the_replay_says_it_has_none(
    live_hours_root: tuple[Path, list[bytes]], replay_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit_app import data

    root, bodies = live_hours_root
    use(root, monkeypatch)
    try:
        candles = data.coin_candles("bitcoin", "1D")
        prices = [float(assets_of(b)["bitcoin"]["priceUsd"]) for b in bodies]
        hours = [
            datetime.fromtimestamp((RECORDED_TIMESTAMP + i * 300_000) / 1000, UTC).hour
            for i in range(30)
        ]
        assert len(candles) == 3 and data.candles_supported(candles)
        for candle in candles.itertuples():
            hour = [p for p, h in zip(prices, hours, strict=True) if h == candle.observed_at.hour]
            assert (candle.open_price_usd, candle.close_price_usd) == (hour[0], hour[-1])
            assert (candle.high_price_usd, candle.low_price_usd) == (max(hour), min(hour))
            assert candle.snapshot_count == len(hour)
        app = run("coin", coin="bitcoin", range="1D", chart="Candles")
        specs = [chart.proto.spec for chart in app.get("vega_lite_chart")]
        assert len(specs) == 3 and "high_price_usd" in specs[0] and "open_price_usd" in specs[0]
        assert download_names(app) == ["Download CSV", "Download CSV"]  # candles, series
        stats = data.compare_stats(("bitcoin", "ethereum"), "1D")  # hourly returns here
        assert list(stats["return_count"]) == [2, 2]
    finally:
        st.cache_data.clear()

    use(replay_root, monkeypatch)
    replay = run("coin", coin="bitcoin", range="1M", chart="Candles")
    assert "the daily replay has one snapshot a day" in texts(replay, "info")
    specs = [chart.proto.spec for chart in replay.get("vega_lite_chart")]
    assert len(specs) == 3 and "high_price_usd" not in specs[0]  # the line, said why
    st.cache_data.clear()


@pytest.mark.usefixtures("replay_app")
def test_compare_risk_and_correlation_from_the_daily_closes(replay_days) -> None:
    """Bitcoin's return over the replay is its last close over its first; every pair of
    the three has a correlation, each coin with itself exactly 1."""
    from streamlit_app import data

    coins = ("bitcoin", "ethereum", "tether")
    stats = data.compare_stats(coins, "ALL").set_index("coin_id")
    btc = [float(assets_of(body)["bitcoin"]["priceUsd"]) for _, body in replay_days]
    assert stats.loc["bitcoin", "total_return_pct"] == pytest.approx(100 * (btc[-1] / btc[0] - 1))
    assert stats.loc["bitcoin", "return_count"] == REPLAY_DAYS - 1
    drawdown = min(p / max(btc[: i + 1]) - 1 for i, p in enumerate(btc))
    assert stats.loc["bitcoin", "max_drawdown_pct"] == pytest.approx(100 * drawdown)
    assert stats.loc["tether", "volatility_pct"] < stats.loc["bitcoin", "volatility_pct"]
    matrix = data.correlations(coins, "ALL")
    assert len(matrix) == 9
    diagonal = matrix[matrix["coin_a"] == matrix["coin_b"]]["correlation"]
    assert diagonal.round(9).eq(1).all()

    app = run("compare", coins=",".join(coins), range="ALL")
    specs = [chart.proto.spec for chart in app.get("vega_lite_chart")]
    assert len(specs) == 3 and '"redblue"' in specs[2]
    assert "Max drawdown" in app.dataframe[0].value.columns
    assert len(download_names(app)) == 3  # the series, the risk table, the matrix


@pytest.mark.usefixtures("replay_app")
def test_prices_and_returns_in_btc_are_ours_divided_at_the_same_moment(replay_days) -> None:
    """Ethereum in BTC is its replayed price over Bitcoin's of the same day, on the chart,
    in the headline, in Compare's returns and risk table; Bitcoin is flat in BTC."""
    from streamlit_app import data

    btc = data.QUOTES["BTC"]
    days = [assets_of(body) for _, body in replay_days]
    ratio = [float(d["ethereum"]["priceUsd"]) / float(d["bitcoin"]["priceUsd"]) for d in days]
    series = data.coin_series("ethereum", "ALL", btc)
    assert series["price_btc"].tolist() == pytest.approx(ratio)
    caps = [float(d["ethereum"]["marketCapUsd"]) / float(d["bitcoin"]["priceUsd"]) for d in days]
    assert series["market_cap_btc"].tolist() == pytest.approx(caps)
    assert "price_usd" not in series  # a column says its unit

    app = run("coin", coin="ethereum", range="ALL", quote="BTC")
    assert app.selectbox(key="quote").value == "BTC"
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Price"] == ui.price(ratio[-1], "BTC")
    assert metrics["Price"].endswith(" BTC") and metrics["Market cap"].endswith(" BTC")
    specs = [chart.proto.spec for chart in app.get("vega_lite_chart")]
    assert '"Price (BTC)"' in specs[0] and "price_btc" in specs[0]
    assert "divided by BTC's USD price at the same day's close" in texts(app, "caption")
    candles = run("coin", coin="ethereum", range="ALL", quote="BTC", chart="Candles")
    assert "Candles are drawn in USD only" in texts(candles, "info")

    compared = data.compare_series(("bitcoin", "ethereum"), "ALL", btc).set_index("coin_id")
    assert compared.loc["bitcoin", "return_pct"].abs().max() == pytest.approx(0.0)
    assert compared.loc["ethereum", "return_pct"].iloc[-1] == pytest.approx(
        100 * (ratio[-1] / ratio[0] - 1)
    )
    stats = data.compare_stats(("bitcoin", "ethereum"), "ALL", btc).set_index("coin_id")
    assert stats.loc["ethereum", "total_return_pct"] == pytest.approx(
        100 * (ratio[-1] / ratio[0] - 1)
    )
    assert stats.loc["bitcoin", "volatility_pct"] == pytest.approx(0.0)
    page = run("compare", coins="bitcoin,ethereum", range="ALL", quote="BTC")
    assert "Return in BTC (daily closes)" in page.dataframe[0].value.columns
    assert "BTC is flat in BTC" in texts(page, "caption")

    made_up = run("coin", coin="ethereum", quote="DOGE")
    assert (
        "The link's quote “DOGE” is not a currency we can show prices in here (USD, BTC, ETH)"
        in texts(made_up, "info")
    )
    assert {m.label: m.value for m in made_up.metric}["Price"].startswith("$")


@pytest.mark.usefixtures("replay_app")
def test_health_page_shows_freshness_days_model_rows_and_dbt_results(replay_days) -> None:
    app = run("health")
    facts = sum(len(assets_of(body)) for _, body in replay_days)

    assert "**Fresh** (pass)" in texts(app, "success")
    assert "warn after 15 min, error after 60 min" in texts(app, "success")  # dbt's rule
    # replay days are a day apart by design: not gaps in the live feed
    assert "No gap longer than 10 minutes" in " ".join(m.value for m in app.markdown)
    assert "Source: replay" in " ".join(m.value for m in app.markdown)
    assert f"{REPLAY_DAYS} day(s) replayed so far" in " ".join(m.value for m in app.markdown)
    model_rows = app.dataframe[0].value.set_index("model")["row_count"]
    headers = json.loads(app.dataframe[0].proto.columns)  # words, not column names
    assert (headers["model"]["label"], headers["row_count"]["label"]) == ("Model", "Rows")
    results = json.loads(app.dataframe[1].proto.columns)  # dbt's results: seconds to 0.01
    assert results["seconds"]["type_config"]["format"] == "%.2f"
    assert model_rows["prod.facts_coins"] == facts
    dbt_results = app.dataframe[1].value
    assert set(dbt_results["status"]) == {"pass", "success"}
    assert len(app.get("vega_lite_chart")) == 1  # snapshots per day


@pytest.mark.parametrize("page", [None, "coin", "compare", "health"])
def test_every_page_says_so_when_there_is_no_data_yet(
    page: str | None, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    st.cache_data.clear()
    app = run(page)
    assert "No data yet" in texts(app, "info")


@pytest.fixture(scope="module")
def ahead_root(tmp_path_factory: pytest.TempPathFactory, replay_days) -> Path:
    """Nine replay days next to a backfill of Bitcoin's whole 2021: history reaching ten
    months past the latest snapshot, as the demo's first minutes have it."""
    from flows.adapters.lake import Lake
    from flows.adapters.source import REPLAY_YEAR
    from flows.core.lake_layout import HistoryKey
    from flows.replay.dataset import ReplayDataset
    from flows.replay.server import history_body

    root = tmp_path_factory.mktemp("ahead")
    dataset = ReplayDataset()
    try:
        points = dataset.history("bitcoin", *REPLAY_YEAR)
    finally:
        dataset.close()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in _env(root).items():
            patch.setenv(key, value)
        settings = Settings()
        key = HistoryKey("replay", "d1", "bitcoin", *REPLAY_YEAR)
        Lake(settings.lake_url).write_history(key, history_body(points))
        tick(settings, [("replay", ts, body) for ts, body in replay_days])
    return root


def test_nothing_after_the_latest_snapshot_is_shown(
    ahead_root: Path, monkeypatch: pytest.MonkeyPatch, replay_days
) -> None:
    """Every range and extreme ends at the latest snapshot, though the warehouse holds
    Bitcoin's daily closes to December (its 2021 high, $67,617 on 2021-11-09, among them)."""
    from streamlit_app import data

    use(ahead_root, monkeypatch)
    as_of = data.as_of()
    assert as_of == datetime.fromtimestamp(replay_days[-1][0] / 1000, tz=UTC).replace(tzinfo=None)
    held = (
        data.reader()
        .query("select max(bucket_at) as last from prod.mart_coin_daily where coin_id = 'bitcoin'")[
            "last"
        ]
        .iat[0]
    )
    assert held > as_of + timedelta(days=300)  # the future is in the warehouse ...
    for range_ in data.RANGES:  # ... and on no chart
        series = data.coin_series("bitcoin", range_)
        assert not series.empty and series["observed_at"].max() <= as_of, range_
    profile = data.coin_profile("bitcoin")
    assert profile is not None and profile["ath_at"] <= as_of and profile["atl_at"] <= as_of
    assert profile["ath_price_usd"] < 50_000  # January's high, not November's
    compared = data.compare_series(("bitcoin", "ethereum"), "ALL")
    assert compared["observed_at"].max() <= as_of

    for range_ in ("1Y", "ALL"):
        page = run("coin", coin="bitcoin", range=range_)
        shown = texts(page, "markdown") + texts(page, "caption")
        assert "2021-11" not in shown and "67,617" not in shown, shown
    st.cache_data.clear()


@pytest.mark.usefixtures("replay_app")
def test_a_shared_link_keeps_what_is_valid_and_says_what_it_dropped(replay_days) -> None:
    ids = list(assets_of(replay_days[-1][1]))
    nine = run("compare", coins=",".join(ids[:9]), range="1M")
    assert "1 coin(s) beyond the first 8" in texts(nine, "info")
    assert list(nine.multiselect[0].value) == ids[:8]

    thirty = run("compare", coins=",".join([*ids[:28], "no-such-coin", "[x](http://a.b)"]))
    said = texts(thirty, "info")
    assert "“no-such-coin”" in said and "20 coin(s) beyond the first 8" in said
    assert "\\[x\\](http\\:\u2060//a.b)" in said  # shown as typed, never a link
    assert len(thirty.multiselect[0].value) == 8

    unknown = run("coin", coin="no-such-coin", range="5Y")
    said = texts(unknown, "info")
    assert "coin “no-such-coin” is not one we hold: showing Bitcoin (BTC)" in said
    assert "range “5Y” is not one of 1D, 7D, 1M, 3M, 1Y, ALL: showing 7D" in said
    assert [h.value for h in unknown.header] == ["Bitcoin (BTC)"]

    long = run("coin", coin="a" * 5000)
    assert "is 5,000 characters long (at most 500)" in texts(long, "info")


@pytest.mark.usefixtures("replay_app")
@hypothesis_settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    page=st_.sampled_from(["market", "history", "ranks", "coin", "compare", "health"]),
    key=st_.sampled_from(["coin", "coins", "range", "search", "chart", "horizon", "top", "x"]),
    value=st_.text(min_size=0, max_size=80) | st_.just(",".join(["bitcoin"] * 40)),
)
def test_no_url_reaches_a_traceback(page: str, key: str, value: str) -> None:
    """Whatever a link carries, every page renders (run() fails on any exception)."""
    run(page, **{key: value})
