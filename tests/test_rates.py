"""The `/rates` gate on CoinCap's own example body and on broken variants of it (arbitrary
bytes and JSON: tests/test_snapshot.py, beside the other gates)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import duckdb
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flows.core.rates import parse_rates
from flows.core.settings import PROJECT_ROOT, Settings
from flows.core.snapshot import InvalidSnapshot
from tests.conftest import body_variant

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).parent / "fixtures/coincap/v2_rates_2018-08-06.json"


def example() -> dict:
    return json.loads(EXAMPLE.read_bytes())


def body(document: dict) -> bytes:
    return json.dumps(document).encode()


def test_coincaps_example_body_parses_whole() -> None:
    rates = parse_rates(EXAMPLE.read_bytes())
    assert len(rates.rates) == 169 and rates.rejected == ()
    assert rates.taken_at.isoformat() == "2018-09-07T19:16:47.471000+00:00"
    by_symbol = {rate.symbol: rate for rate in rates.rates}
    euro = by_symbol["EUR"]
    assert (euro.id, euro.type, euro.currency_symbol) == ("euro", "fiat", "€")
    assert euro.rate_usd == pytest.approx(1.1561549062589602)
    assert by_symbol["USD"].rate_usd == 1.0
    assert by_symbol["WAVES"].currency_symbol is None and by_symbol["WAVES"].type == "crypto"
    assert by_symbol["SVC"].id == "salvadoran-colón"  # ids are not ASCII-only
    assert sum(rate.type == "fiat" for rate in rates.rates) == 157


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"rateUsd": "0.0000000000000000"}, "`rateUsd` must be a positive number"),
        ({"rateUsd": "-1.2"}, "`rateUsd` must be a positive number"),
        ({"rateUsd": "1e3"}, "not a plain decimal number"),
        ({"rateUsd": None}, "`rateUsd` must be a positive number"),
        ({"symbol": "eur"}, "`symbol` must be 2-12 capital letters"),
        ({"symbol": "E\u0301UR"}, "`symbol` must be 2-12 capital letters"),
        ({"type": "commodity"}, "`type` must be one of fiat, crypto"),
        ({"currencySymbol": "€\x00"}, "control character"),
    ],
)
def test_one_bad_rate_is_left_out_with_its_reason(change: dict, reason: str) -> None:
    document = example()
    euro = next(i for i, rate in enumerate(document["data"]) if rate["id"] == "euro")
    document["data"][euro].update(change)
    rates = parse_rates(body(document))
    assert len(rates.rates) == 168
    assert len(rates.rejected) == 1 and reason in rates.rejected[0], rates.rejected
    assert rates.rejected[0].startswith("rate 'euro'")


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"data": [], "timestamp": 1536347807471}, "`data` is empty"),
        ({"data": {"error": "use v3"}, "timestamp": 1}, "v2 shutdown body"),
        ({"data": [{"id": "euro"}]}, "`timestamp` is missing or null"),
        ({"data": [{"id": "euro"}], "timestamp": 15363478074}, "not between 2009 and 2100"),
        ([], "expected an object"),
    ],
)
def test_a_body_broken_as_a_whole_is_refused(document: object, reason: str) -> None:
    with pytest.raises(InvalidSnapshot, match=reason):
        parse_rates(json.dumps(document).encode())


def test_two_rates_under_one_symbol_are_both_left_out() -> None:
    document = example()
    euro = next(rate for rate in document["data"] if rate["id"] == "euro")
    euro["symbol"] = "GBP"  # now EUR's value or the pound's: neither can be trusted as GBP
    rates = parse_rates(body(document))
    assert {rate.symbol for rate in rates.rates}.isdisjoint({"GBP", "EUR"})
    assert sorted(rates.rejected) == [
        "rate 'british-pound-sterling': shares the symbol 'GBP' with another rate",
        "rate 'euro': shares the symbol 'GBP' with another rate",
    ]


def test_a_repeated_id_or_many_bad_rates_refuse_the_body() -> None:
    document = example()
    document["data"].append(dict(document["data"][0]))
    with pytest.raises(InvalidSnapshot, match="duplicate id"):
        parse_rates(body(document))
    document = example()
    for rate in document["data"][:20]:
        rate["rateUsd"] = "n/a"
    with pytest.raises(InvalidSnapshot, match="20 of 169 rates are unusable"):
        parse_rates(body(document))


def rates_body(timestamp_ms: int, **euro: object) -> bytes:
    document = example()
    document["timestamp"] = timestamp_ms
    next(rate for rate in document["data"] if rate["id"] == "euro").update(euro)
    return body(document)


@pytest.mark.integration
def test_a_rates_file_loads_once_and_a_bad_rate_is_a_dead_letter(tmp_path: Path) -> None:
    """The loader's path for `/rates`, on real DuckDB: rows once however often it runs, a
    rate the gate refuses recorded with its reason, a broken body moved to quarantine while
    the file after it loads."""
    from flows.adapters.duckdb_warehouse import DuckDBWarehouse
    from flows.adapters.lake import Lake
    from flows.core.loading import load_pending

    lake = Lake(str(tmp_path / "lake"))
    first, second, broken = 1742150071000, 1742150371000, 1742150671000
    lake.write_rates("coincap", first, rates_body(first))
    lake.write_rates("coincap", second, rates_body(second, rateUsd="-1"))
    lake.write_rates("coincap", broken, b'{"data": "down", "timestamp": 1742150671000}')
    with DuckDBWarehouse(tmp_path / "warehouse.duckdb") as warehouse:
        result = load_pending(lake, warehouse)
        again = load_pending(lake, warehouse)
        rows = warehouse.con.execute(
            "select lake_path, count(*), count(distinct load_seq) from raw.coincap_rates "
            "group by lake_path order by lake_path"
        ).fetchall()
        euro = warehouse.con.execute(
            "select rates_at, rate_usd, currency_symbol, type from raw.coincap_rates "
            "where symbol = 'EUR'"
        ).fetchall()
        letters = warehouse.con.execute(
            "select stage, item, reason from ops.dead_letters order by item"
        ).fetchall()
    assert (result.files_loaded, result.rows_loaded) == (2, 169 + 168)
    assert (again.files_loaded, again.rows_loaded, again.files_already_loaded) == (0, 0, 2)
    assert rows == [
        (f"raw/coincap/rates/date=2025-03-16/{first}.json.gz", 169, 1),
        (f"raw/coincap/rates/date=2025-03-16/{second}.json.gz", 168, 1),
    ]
    assert len(euro) == 1 and euro[0][1:] == (pytest.approx(1.1561549062589602), "€", "fiat")
    assert list(result.dead_lettered) == [f"raw/coincap/rates/date=2025-03-16/{broken}.json.gz"]
    assert [(stage, item.rsplit("/", 1)[1]) for stage, item, _ in letters] == [
        ("load", f"{second}.json.gz"),
        ("load", f"{broken}.json.gz"),
    ]
    assert "`rateUsd` must be a positive number" in letters[0][2]
    assert "expected a list of rates" in letters[1][2]
    assert lake.scan().rates == [
        f"raw/coincap/rates/date=2025-03-16/{first}.json.gz",
        f"raw/coincap/rates/date=2025-03-16/{second}.json.gz",
    ]


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def live_with_rates(
    settings: Settings, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> HTTPServer:
    """Live mode with `/rates` on (the product's default; off in other tests), one attempt
    per request so a refusal is quick."""
    for name, value in {
        "CRYPTOLYTICS_SOURCE": "coincap",
        "CRYPTOLYTICS_COINCAP_API_KEY": KEY,
        "CRYPTOLYTICS_COINCAP_BASE_URL": httpserver.url_for("/v3"),
        "CRYPTOLYTICS_FETCH_RATES": "true",
        "CRYPTOLYTICS_HTTP_MAX_ATTEMPTS": "1",
    }.items():
        monkeypatch.setenv(name, value)
    return httpserver


KEY = "sk-rates-SECRET-7e57"


@pytest.mark.integration
@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_a_live_tick_keeps_the_rates_and_the_app_prices_bitcoin_in_euros(
    settings: Settings, live_with_rates: HTTPServer, recorded_assets: bytes
) -> None:
    """`/rates` after `/assets`: kept in the lake, loaded, closed by the hour, offered on the
    Coin page as EUR, and Bitcoin's price there is its USD price over the euro's rate."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from flows.pipeline import pipeline
    from streamlit_app import data, ui

    taken = now_ms()
    assets = body_variant(recorded_assets, timestamp_ms=taken)
    live_with_rates.expect_request("/v3/assets").respond_with_data(assets)
    live_with_rates.expect_request("/v3/rates").respond_with_data(rates_body(taken, rateUsd="1.25"))
    result = pipeline()

    assert result.extracted.rates_path and result.extracted.rates_note is None
    assert result.extracted.rates_path.startswith("raw/coincap/rates/")
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        euro = con.execute(
            "select close_rate_usd from prod.mart_fiat_rates_hourly where symbol = 'EUR'"
        ).fetchall()
        coins = con.execute(
            "select count(*) from prod.mart_fiat_rates_hourly where symbol = 'BTC'"
        ).fetchone()
    assert euro == [(1.25,)] and coins == (0,)  # coins' rates are ours, from /assets

    st.cache_data.clear()
    app = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app" / "app.py"), default_timeout=60)
    app.switch_page("views/coin.py")
    app.query_params.update(coin="bitcoin", quote="EUR")
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert app.selectbox(key="quote").value == "EUR"
    euro_quote = next(q for q in data.fiat_quotes() if q.code == "EUR")
    assert (
        "EUR" in app.selectbox(key="quote").options and "BTC" in app.selectbox(key="quote").options
    )
    bitcoin = next(a for a in json.loads(assets)["data"] if a["id"] == "bitcoin")
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Price"] == ui.price(float(bitcoin["priceUsd"]) / 1.25, "EUR")
    series = data.coin_series("bitcoin", "1D", euro_quote)  # the chart's and the download's
    assert series["price_eur"].tolist() == pytest.approx([float(bitcoin["priceUsd"]) / 1.25])
    st.cache_data.clear()


@pytest.mark.integration
@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_rates_we_cannot_use_wait_a_tick_and_fail_nothing(
    settings: Settings, live_with_rates: HTTPServer, recorded_assets: bytes
) -> None:
    """`/rates` down, then a stale answer, then a good one: every tick completes with its
    market snapshot, each refusal is a dead letter with its reason (and never the key), and
    the good answer after them loads."""
    from flows.pipeline import pipeline

    start = now_ms() - 10 * 60_000
    answers = iter(
        [
            Response("upstream down", status=503),
            Response(rates_body(1536347807471), content_type="application/json"),  # 2018
            Response(rates_body(start + 10 * 60_000), content_type="application/json"),
        ]
    )
    ticks = iter(range(3))

    def assets(request: Request) -> Response:
        taken = start + next(ticks) * 5 * 60_000
        return Response(body_variant(recorded_assets, timestamp_ms=taken))

    live_with_rates.expect_request("/v3/assets").respond_with_handler(assets)
    live_with_rates.expect_request("/v3/rates").respond_with_handler(lambda _: next(answers))
    states = [pipeline(return_state=True) for _ in range(3)]

    assert [state.is_completed() for state in states] == [True, True, True]
    results = [state.result() for state in states]
    assert [r.extracted.rates_path is None for r in results] == [True, True, False]
    assert "503" in str(results[0].extracted.rates_note)
    assert "stale or future answer" in str(results[1].extracted.rates_note)
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        letters = con.execute(
            "select stage, item, reason from ops.dead_letters order by item"
        ).fetchall()
        loaded = con.execute("select count(distinct rates_at) from raw.coincap_rates").fetchone()
        snapshots = con.execute(
            "select count(distinct snapshot_at) from prod.facts_coins"
        ).fetchone()
    assert loaded == (1,) and snapshots == (3,)
    assert [(stage, item.endswith("/v3/rates")) for stage, item, _ in letters] == [
        ("fetch", True)
    ] * 2
    reasons = " ".join(reason for *_, reason in letters)
    assert "503" in reasons and "stale or future answer" in reasons
    kept = " ".join(
        path.read_text() for path in (Path(settings.lake_url) / "quarantine").rglob("*.reason.json")
    )
    assert "/rates" in kept and KEY not in kept and KEY not in reasons
