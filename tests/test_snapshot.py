"""Validation of `/assets` bodies: real recorded data passes, every defect is named."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.snapshot import InvalidSnapshot, parse_snapshot
from tests.conftest import RECORDED_TIMESTAMP


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


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda raw: b"", "not JSON"),
        (lambda raw: b"<html><body>502 Bad Gateway</body></html>", "not JSON"),
        (lambda raw: raw[: len(raw) // 2], "not JSON"),
        (lambda raw: b"[]", "JSON list, expected an object"),
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
        (lambda raw: _with_first_asset(raw, id="<drop>"), "lacks required field `id`"),
        (lambda raw: _with_first_asset(raw, rank=None), "lacks required field `rank`"),
        (lambda raw: _with_first_asset(raw, priceUsd="<drop>"), "lacks required field `priceUsd`"),
        (lambda raw: _with_first_asset(raw, id="ethereum"), "duplicate id 'ethereum'"),
        (lambda raw: _with_first_asset(raw, priceUsd="abc"), "`priceUsd` is not a number: 'abc'"),
        (lambda raw: _with_first_asset(raw, priceUsd="NaN"), "`priceUsd` is not finite"),
        (lambda raw: _with_first_asset(raw, priceUsd="1e400"), "`priceUsd` overflows a double"),
        (lambda raw: _with_first_asset(raw, priceUsd="-3.5"), "`priceUsd` must not be negative"),
        (
            lambda raw: _with_first_asset(raw, supply=[1]),
            "`supply` is a JSON list, expected a number",
        ),
        (lambda raw: _with_first_asset(raw, rank="1.5"), "`rank` must be a whole number"),
        (lambda raw: _with_first_asset(raw, id="../../etc"), "unusable id '../../etc'"),
        (lambda raw: _with_first_asset(raw, name=7), "`name` is a JSON int, expected text"),
    ],
)
def test_bad_bodies_are_rejected_with_a_reason(recorded_assets: bytes, mutate, reason: str) -> None:
    with pytest.raises(InvalidSnapshot) as caught:
        parse_snapshot(mutate(recorded_assets))
    assert reason in caught.value.reason


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
    timestamp=st.integers(min_value=1, max_value=2**53),
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


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_parser(raw: bytes) -> None:
    reasons = []
    try:
        parse_snapshot(raw)
    except InvalidSnapshot as exc:
        reasons.append(exc.reason)
    assert all(reasons)  # anything but InvalidSnapshot (with a reason) fails the test
