"""Validation of `/assets` bodies: real recorded data passes, every defect is named."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.core.rates import parse_rates
from flows.core.snapshot import InvalidSnapshot, parse_history, parse_snapshot
from tests.conftest import RECORDED_TIMESTAMP

pytestmark = pytest.mark.unit


def test_recorded_body_parses_with_its_real_oddities(recorded_assets: bytes) -> None:
    snapshot = parse_snapshot(recorded_assets, max_assets=100)
    assets = {a.id: a for a in snapshot.assets}

    assert snapshot.timestamp_ms == RECORDED_TIMESTAMP
    assert snapshot.taken_at.isoformat() == "2025-03-16T18:34:31.411000+00:00"
    assert len(assets) == 100
    assert [a.rank for a in snapshot.assets] == list(range(1, 101))
    # nulls CoinCap really sends are valid
    assert sum(a.max_supply is None for a in snapshot.assets) == 56
    assert sum(a.explorer is None for a in snapshot.assets) == 11
    assert sum(a.vwap_24hr is None for a in snapshot.assets) == 1
    assert assets["floki-inu"].max_supply == 0.0  # kept as sent; staging turns 0 into null
    # string numbers with 16 decimals become doubles without losing meaningful digits
    assert assets["bitcoin"].price_usd == pytest.approx(84022.2946497137054007, rel=1e-15)
    assert min(a.price_usd for a in snapshot.assets) == pytest.approx(6.89697263e-07, rel=1e-12)


def _with_first_asset(raw: bytes, **changes: object) -> bytes:
    body = json.loads(raw)
    body["data"][0].update(changes)
    for key, value in list(body["data"][0].items()):
        if value == "<drop>":
            del body["data"][0][key]
    return json.dumps(body).encode()


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda raw: b"", "not JSON"),
        (lambda raw: b"<html><body>502 Bad Gateway</body></html>", "not JSON"),
        (lambda raw: raw[: len(raw) // 2], "not JSON"),
        (lambda raw: b"\xff\xfe" + raw, "not JSON"),
        (lambda raw: b"[]", "JSON list, expected an object"),
        (lambda raw: _nested(100_000), "nested too deeply"),
        (lambda raw: json.dumps({"timestamp": 1}).encode(), "`data` is missing or null"),
        (lambda raw: json.dumps({"data": None, "timestamp": 1}).encode(), "`data` is missing"),
        (
            lambda raw: json.dumps({"data": {"message": "v2 is shut down"}}).encode(),
            "v2 shutdown body?): v2 is shut down",
        ),
        (lambda raw: json.dumps({"data": []}).encode(), "`timestamp` is missing"),
        (
            lambda raw: json.dumps({"data": [], "timestamp": "soon"}).encode(),
            "`timestamp` is a JSON str",
        ),
        (lambda raw: json.dumps({"data": [], "timestamp": 10**20}).encode(), "between 2009"),
        (lambda raw: json.dumps({"data": [], "timestamp": 86_400_000}).encode(), "between 2009"),
        (lambda raw: _with_first_asset(raw, id="ethereum"), "duplicate id 'ethereum'"),
        (lambda raw: raw.replace(b'"priceUsd":"84022', b'"priceUsd":NaN,"x":"', 1), "NaN"),
        (
            lambda raw: raw.replace(b'"rank":"1",', b'"rank":"1","rank":"2",', 1),
            "repeats the key 'rank'",
        ),
        (lambda raw: _every_asset(raw, priceUsd="abc"), "100 of 100 assets are unusable"),
    ],
)
def test_bodies_broken_as_a_whole_are_rejected_with_a_reason(
    recorded_assets: bytes, mutate, reason: str
) -> None:
    with pytest.raises(InvalidSnapshot) as caught:
        parse_snapshot(mutate(recorded_assets))
    assert reason in caught.value.reason


def _every_asset(raw: bytes, **changes: object) -> bytes:
    body = json.loads(raw)
    for asset in body["data"]:
        asset.update(changes)
    return json.dumps(body).encode()


# One bad coin hurts only itself: the other 99 load, and the reason names the coin.
@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"rank": None}, "asset 'bitcoin': lacks required field `rank`"),
        ({"priceUsd": "<drop>"}, "lacks required field `priceUsd`"),
        ({"priceUsd": "abc"}, "`priceUsd` is not a plain decimal number: 'abc'"),
        ({"priceUsd": "NaN"}, "`priceUsd` is not a plain decimal number"),
        ({"priceUsd": "1e400"}, "`priceUsd` is not a plain decimal number"),
        ({"priceUsd": "1e5"}, "not a plain decimal number"),
        ({"priceUsd": "1_000.5"}, "not a plain decimal number"),
        ({"priceUsd": "١٢٣"}, "not a plain decimal number"),  # Arabic-Indic digits
        ({"priceUsd": "１２３"}, "not a plain decimal number"),  # fullwidth digits
        ({"priceUsd": " 84022.5"}, "not a plain decimal number"),
        ({"priceUsd": "+84022.5"}, "not a plain decimal number"),
        ({"priceUsd": "9" * 41}, "not a plain decimal number"),
        ({"priceUsd": "-3.5"}, "`priceUsd` must not be negative"),
        ({"marketCapUsd": "-1666810586973.93"}, "`marketCapUsd` must not be negative"),
        ({"supply": "-1"}, "`supply` must not be negative"),
        ({"volumeUsd24Hr": "-5"}, "`volumeUsd24Hr` must not be negative"),
        ({"supply": [1]}, "`supply` is a JSON list, expected a number"),
        ({"supply": True}, "`supply` is a JSON bool, expected a number"),
        ({"rank": "1.5"}, "`rank` must be a whole number"),
        ({"rank": "0"}, "`rank` must be a whole number"),
        ({"rank": str(2**31)}, "`rank` must be a whole number from 1 to 2147483647"),
        ({"name": 7}, "`name` is a JSON int, expected text"),
        ({"name": "\ud800 lone surrogate"}, "`name` is not valid UTF-8"),
        ({"name": "Bit\x00coin"}, "`name` holds a control character"),
        ({"symbol": "B" * 65}, "`symbol` is 65 characters long"),
    ],
)
def test_one_bad_asset_is_skipped_with_a_reason_and_the_rest_loads(
    recorded_assets: bytes, changes: dict, reason: str
) -> None:
    snapshot = parse_snapshot(_with_first_asset(recorded_assets, **changes))
    assert len(snapshot.assets) == 99
    assert "bitcoin" not in {a.id for a in snapshot.assets}
    assert len(snapshot.rejected) == 1 and reason in snapshot.rejected[0], snapshot.rejected
    assert snapshot.skipped == ()


@pytest.mark.parametrize(
    ("asset_id", "reason"),
    [
        (None, "asset #0: lacks required field `id`"),
        ("../../etc", "has an unusable id '../../etc'"),
        ("bit\ncoin", "has an unusable id"),
        ("\udcff", "has an id that is not valid UTF-8"),
    ],
)
def test_an_asset_with_an_unusable_id_is_skipped(
    recorded_assets: bytes, asset_id: object, reason: str
) -> None:
    changes = {"id": "<drop>"} if asset_id is None else {"id": asset_id}
    snapshot = parse_snapshot(_with_first_asset(recorded_assets, **changes))
    assert len(snapshot.assets) == 99
    assert reason in snapshot.rejected[0]


def test_a_few_bad_assets_pass_but_a_broken_body_does_not(recorded_assets: bytes) -> None:
    body = json.loads(recorded_assets)
    for asset in body["data"][:10]:
        asset["priceUsd"] = "-1"
    assert len(parse_snapshot(json.dumps(body).encode()).assets) == 90  # 10 %: still coins
    body["data"][10]["priceUsd"] = "-1"
    with pytest.raises(InvalidSnapshot, match="11 of 100 assets are unusable"):
        parse_snapshot(json.dumps(body).encode())


def test_a_zero_price_skips_that_coin_not_the_snapshot(recorded_assets: bytes) -> None:
    """CoinCap prints prices with 16 decimals, so a dust coin can arrive as 0: that coin has
    no usable price, the other 99 still load (seen in the replay data: neon-exchange, 2021)."""
    snapshot = parse_snapshot(_with_first_asset(recorded_assets, priceUsd="0.0000000000000000"))
    assert len(snapshot.assets) == 99
    assert "bitcoin" not in {a.id for a in snapshot.assets}
    assert snapshot.skipped == (
        "asset 'bitcoin': priceUsd is '0.0000000000000000' (below what 16 decimals show)",
    )


def test_more_assets_than_asked_is_rejected(recorded_assets: bytes) -> None:
    with pytest.raises(InvalidSnapshot, match="100 assets returned but at most 50 were asked"):
        parse_snapshot(recorded_assets, max_assets=50)


def test_unknown_fields_and_numbers_as_json_numbers_are_accepted(recorded_assets: bytes) -> None:
    raw = _with_first_asset(
        recorded_assets, priceUsd=84000.5, tokenomics={"x": 1}, name="Bítcoin ₿"
    )
    bitcoin = parse_snapshot(raw).assets[0]
    assert bitcoin.price_usd == 84000.5
    assert bitcoin.name == "Bítcoin ₿"


_decimal_strings = st.decimals(
    min_value="1e-12", max_value="1e15", allow_nan=False, allow_infinity=False, places=16
).map(lambda d: f"{d:.16f}")


@given(
    prices=st.lists(_decimal_strings, min_size=1, max_size=30),
    timestamp=st.integers(min_value=1230768000000, max_value=4102444800000 - 1),
)
def test_any_well_formed_body_round_trips(prices: list[str], timestamp: int) -> None:
    prices = [p for p in prices if float(p) > 0] or ["1.0"]
    data = [
        {"id": f"coin-{i}", "rank": str(i + 1), "priceUsd": p, "supply": None, "explorer": None}
        for i, p in enumerate(prices)
    ]
    snapshot = parse_snapshot(json.dumps({"data": data, "timestamp": timestamp}).encode())
    assert snapshot.timestamp_ms == timestamp
    assert [a.id for a in snapshot.assets] == [d["id"] for d in data]
    for asset, price in zip(snapshot.assets, prices, strict=True):
        assert math.isclose(asset.price_usd, float(price), rel_tol=1e-15)


def _outcome(parse: Callable[[bytes], object], raw: bytes) -> str:
    """'ok' or the reason; any exception but InvalidSnapshot fails the calling test."""
    try:
        parse(raw)
    except InvalidSnapshot as exc:
        reason = exc.reason
    else:
        return "ok"
    assert reason
    return reason


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_but_the_validation_error(raw: bytes) -> None:
    _outcome(parse_snapshot, raw)
    _outcome(parse_history, raw)
    _outcome(parse_rates, raw)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
_field_values = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30) | _json
)
_asset_like = st.fixed_dictionaries(
    {},
    optional={
        name: _field_values | _decimal_strings
        for name in ("id", "rank", "symbol", "name", "supply", "maxSupply", "marketCapUsd",
                     "volumeUsd24Hr", "priceUsd", "changePercent24Hr", "vwap24Hr", "explorer")
    },
)  # fmt: skip


_rate_like = st.fixed_dictionaries(
    {},
    optional={
        name: _field_values | _decimal_strings | st.sampled_from(["fiat", "crypto", "EUR"])
        for name in ("id", "symbol", "currencySymbol", "type", "rateUsd")
    },
)


@settings(max_examples=300, deadline=None)
@given(
    body=st.one_of(
        _json,
        st.fixed_dictionaries(
            {
                "data": st.lists(_asset_like | _rate_like | _json, max_size=8),
                "timestamp": _field_values,
            }
        ),
    )
)
def test_arbitrary_json_never_raises_anything_but_the_validation_error(body: object) -> None:
    raw = json.dumps(body).encode()  # NaN and Infinity as JSON literals, too
    if _outcome(parse_snapshot, raw) == "ok":
        snapshot = parse_snapshot(raw)  # what passed is loadable: the warehouse's own rules
        for asset in snapshot.assets:
            assert 1 <= asset.rank <= 2**31 - 1
            assert asset.price_usd > 0 and math.isfinite(asset.price_usd)
            for text in (asset.id, asset.name, asset.symbol, asset.explorer):
                assert text is None or text.encode("utf-8")
    _outcome(parse_history, raw)
    if _outcome(parse_rates, raw) == "ok":
        assert all(
            rate.rate_usd > 0 and math.isfinite(rate.rate_usd) for rate in parse_rates(raw).rates
        )
