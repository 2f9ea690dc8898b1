"""Parse and validate one CoinCap `/rates` body: the USD value of fiat currencies (and a few
coins), fetched once a tick beside `/assets`, so prices can be shown in EUR or JPY.

Plain Python, no I/O, the same gate as `flows.core.snapshot` and built from its rules: strict
JSON, plain decimal strings, valid UTF-8 text without control characters, epoch milliseconds
between 2009 and 2100. One bad rate hurts only itself (left out, with a reason the loader
records as a dead letter); a body is rejected whole only when it is broken as a whole (not
JSON, not the `/rates` shape, a repeated id, too many unusable rates). Whatever the bytes,
parsing raises nothing but `InvalidSnapshot`.

The format is CoinCap's own documentation example of `GET /v2/rates` (no v3 body was ever
recorded; v3 keeps v2's shapes): `{"data": [{"id", "symbol", "currencySymbol", "type",
"rateUsd"}], "timestamp"}`, `rateUsd` being how many dollars one unit is worth (EUR 1.156).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from flows.core.snapshot import (
    ASSET_ID_PATTERN,
    BadValue,
    InvalidSnapshot,
    is_utf8,
    kind_of,
    number_field,
    only_invalid_snapshot,
    preview,
    refuse_if_broken,
    text_field,
    tick_body,
)

RATE_TYPES = ("fiat", "crypto")
# ISO 4217 codes are three letters; CoinCap's coin symbols run longer (WAVES, USDT).
SYMBOL_PATTERN = re.compile(r"[A-Z0-9]{2,12}")
# CoinCap lists about 170 rates; a body of thousands is not a rates answer.
MAX_RATES = 1000


@dataclass(frozen=True, slots=True)
class Rate:
    """One currency's USD value at one tick, with warehouse column names."""

    id: str
    symbol: str
    currency_symbol: str | None
    type: str
    rate_usd: float


RATE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Rate))


@dataclass(frozen=True, slots=True)
class RatesSnapshot:
    """A validated `/rates` body: the API's own timestamp and its rates; `rejected` says
    which rates were left out and why."""

    timestamp_ms: int
    rates: tuple[Rate, ...]
    rejected: tuple[str, ...] = ()

    @property
    def taken_at(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, tz=UTC)

    def columns(self) -> dict[str, list[Any]]:
        return {name: [getattr(r, name) for r in self.rates] for name in RATE_COLUMNS}


def parse_rates(raw: bytes) -> RatesSnapshot:
    """Validate a raw `/rates` body; raise `InvalidSnapshot` on anything we would not load,
    and nothing else, whatever the bytes."""
    return only_invalid_snapshot(_parse_rates, raw)


def _parse_rates(raw: bytes) -> RatesSnapshot:
    data, timestamp = tick_body(raw, "rates", "an answer with no rate is not a rates snapshot")
    if len(data) > MAX_RATES:
        raise InvalidSnapshot(f"{len(data)} rates returned, more than the {MAX_RATES} we read")
    checked: list[tuple[str, Rate]] = []
    rejected: list[str] = []
    ids: set[str] = set()
    for position, item in enumerate(data):
        rate_id = item.get("id") if isinstance(item, dict) else None
        where = f"rate #{position}"
        if isinstance(rate_id, str) and ASSET_ID_PATTERN.fullmatch(rate_id) and is_utf8(rate_id):
            where = f"rate {rate_id!r}"
            if rate_id in ids:
                raise InvalidSnapshot(f"duplicate id {rate_id!r}")
            ids.add(rate_id)
        try:
            checked.append((where, _rate(item)))
        except BadValue as exc:
            rejected.append(f"{where}: {exc}")
    # two rates under one symbol: which is EUR? Neither is shown as it (the rest load)
    counts = Counter(rate.symbol for _, rate in checked)
    rates = [rate for _, rate in checked if counts[rate.symbol] == 1]
    rejected += [
        f"{where}: shares the symbol {rate.symbol!r} with another rate"
        for where, rate in checked
        if counts[rate.symbol] > 1
    ]
    refuse_if_broken(rejected, len(data), "rates", "rates")
    return RatesSnapshot(timestamp_ms=timestamp, rates=tuple(rates), rejected=tuple(rejected))


def _rate(item: Any) -> Rate:
    if not isinstance(item, dict):
        raise BadValue(f"is {kind_of(item)}, expected an object")
    rate_id = item.get("id")
    if not isinstance(rate_id, str) or not ASSET_ID_PATTERN.fullmatch(rate_id):
        raise BadValue(f"has an unusable id {preview(rate_id)}")
    if not is_utf8(rate_id):
        raise BadValue("has an id that is not valid UTF-8 text")
    symbol = item.get("symbol")
    if not isinstance(symbol, str) or not SYMBOL_PATTERN.fullmatch(symbol):
        raise BadValue(f"`symbol` must be 2-12 capital letters or digits, got {preview(symbol)}")
    kind = item.get("type")
    if kind not in RATE_TYPES:
        raise BadValue(f"`type` must be one of {', '.join(RATE_TYPES)}, got {preview(kind)}")
    rate_usd = number_field(item.get("rateUsd"), "`rateUsd`")
    if rate_usd is None or rate_usd <= 0:
        # a currency worth nothing divides by zero: a broken value, not a market fact
        raise BadValue(f"`rateUsd` must be a positive number, got {preview(item.get('rateUsd'))}")
    return Rate(
        id=rate_id,
        symbol=symbol,
        currency_symbol=text_field(item.get("currencySymbol"), "`currencySymbol`", 16),
        type=kind,
        rate_usd=rate_usd,
    )
