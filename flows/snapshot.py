"""Parse and validate one CoinCap `/assets` body: the gate before anything is stored as good.

Plain Python, no Prefect and no I/O, so every rule here is unit-tested directly.

Precision: CoinCap sends numbers as strings with up to 16 decimals. We check each one
with `Decimal` (exact, so "abc", "NaN", "Infinity" and "1e400" are caught) and keep it as
an IEEE double, which holds 15-17 significant digits: far more than any price, supply or
market cap carries in meaning, and, unlike a fixed-scale DECIMAL(38, 9), it keeps the
relative precision of micro-cap prices such as 1.3e-08. The exact strings stay in the raw
lake file, so nothing is lost for good.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

# Ids are CoinCap's slugs ("bitcoin", and real oddities like "boringdao-[old]"). One may end
# up in a lake path or URL, so no separators, control characters or leading dot.
ASSET_ID_PATTERN = re.compile(r"[^./\\\x00-\x1f\x7f][^/\\\x00-\x1f\x7f]{0,127}")

REQUIRED_FIELDS = ("id", "rank", "priceUsd")
# CoinCap's numeric fields, body name -> column name; any may be null except priceUsd.
NUMERIC_FIELDS = {
    "supply": "supply",
    "maxSupply": "max_supply",
    "marketCapUsd": "market_cap_usd",
    "volumeUsd24Hr": "volume_usd_24hr",
    "priceUsd": "price_usd",
    "changePercent24Hr": "change_percent_24hr",
    "vwap24Hr": "vwap_24hr",
}
TEXT_FIELDS = ("symbol", "name", "explorer")


class InvalidSnapshot(ValueError):
    """The body must not reach the warehouse; `reason` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Asset:
    """One asset of one snapshot, typed, with warehouse column names."""

    id: str
    rank: int
    symbol: str | None
    name: str | None
    supply: float | None
    max_supply: float | None
    market_cap_usd: float | None
    volume_usd_24hr: float | None
    price_usd: float
    change_percent_24hr: float | None
    vwap_24hr: float | None
    explorer: str | None


ASSET_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Asset))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A validated `/assets` body: the API's own timestamp and its assets."""

    timestamp_ms: int
    assets: tuple[Asset, ...]
    # Assets left out, with why: a price of 0 is CoinCap's way of printing a price below
    # 1e-16 at 16 decimals; the coin has no usable price in this snapshot, the rest does.
    skipped: tuple[str, ...] = ()

    @property
    def taken_at(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, tz=UTC)

    def columns(self) -> dict[str, list[Any]]:
        """Column-major view, the shape bulk loaders want."""
        return {name: [getattr(a, name) for a in self.assets] for name in ASSET_COLUMNS}


def shutdown_notice(body: Any) -> str | None:
    """The message of CoinCap's v2 shutdown body (`data` is an object), if this is one."""
    if isinstance(body, dict) and isinstance(body.get("data"), dict):
        data = body["data"]
        message = data.get("message") or data.get("error") or json.dumps(data)[:300]
        return str(message)
    return None


def parse_snapshot(raw: bytes, *, max_assets: int | None = None) -> Snapshot:
    """Validate a raw `/assets` body; raise `InvalidSnapshot` on anything we would not load."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidSnapshot(f"body is not JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(body, dict):
        raise InvalidSnapshot(f"body is a JSON {type(body).__name__}, expected an object")
    notice = shutdown_notice(body)
    if notice is not None:
        raise InvalidSnapshot(f"`data` is an object, not a list (v2 shutdown body?): {notice}")
    data = body.get("data")
    if not isinstance(data, list):
        raise InvalidSnapshot(f"`data` is {_kind(data)}, expected a list of assets")
    timestamp = body.get("timestamp")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp <= 0:
        raise InvalidSnapshot(f"`timestamp` is {_kind(timestamp)}, expected epoch milliseconds")
    if max_assets is not None and len(data) > max_assets:
        raise InvalidSnapshot(f"{len(data)} assets returned but at most {max_assets} were asked")
    assets: list[Asset] = []
    skipped: list[str] = []
    for item in _iter_assets(data):
        if isinstance(item, Asset):
            assets.append(item)
        else:
            skipped.append(item)
    return Snapshot(timestamp_ms=timestamp, assets=tuple(assets), skipped=tuple(skipped))


def _iter_assets(data: list[Any]) -> Iterator[Asset | str]:
    """Each valid asset, or a sentence saying why one is skipped; raises on a broken body."""
    seen: set[str] = set()
    for position, item in enumerate(data):
        where = f"asset #{position}"
        if not isinstance(item, dict):
            raise InvalidSnapshot(f"{where} is {_kind(item)}, expected an object")
        for name in REQUIRED_FIELDS:
            if item.get(name) is None:
                raise InvalidSnapshot(f"{where} lacks required field `{name}`")
        asset_id = item["id"]
        if not isinstance(asset_id, str) or not ASSET_ID_PATTERN.fullmatch(asset_id):
            raise InvalidSnapshot(f"{where} has an unusable id {asset_id!r}")
        where = f"asset {asset_id!r}"
        if asset_id in seen:
            raise InvalidSnapshot(f"duplicate id {asset_id!r}")
        seen.add(asset_id)
        numbers = {
            column: _number(item.get(name), f"{where} `{name}`")
            for name, column in NUMERIC_FIELDS.items()
        }
        price = numbers["price_usd"]
        if price is None or price < 0:
            raise InvalidSnapshot(
                f"{where} `priceUsd` must not be negative, got {item['priceUsd']!r}"
            )
        if price == 0:
            yield f"{where}: priceUsd is {item['priceUsd']!r} (below what 16 decimals show)"
            continue
        texts = {name: _text(item.get(name), f"{where} `{name}`") for name in TEXT_FIELDS}
        yield Asset(
            id=asset_id,
            rank=_rank(item["rank"], where),
            price_usd=price,
            **{k: v for k, v in numbers.items() if k != "price_usd"},
            **texts,
        )


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidSnapshot(f"{where} is {_kind(value)}, expected a number")
    try:
        exact = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidSnapshot(f"{where} is not a number: {str(value)[:40]!r}") from None
    if not exact.is_finite():
        raise InvalidSnapshot(f"{where} is not finite: {value!r}")
    as_float = float(exact)
    if not math.isfinite(as_float):
        raise InvalidSnapshot(f"{where} overflows a double: {str(value)[:40]!r}")
    return as_float


def _rank(value: Any, where: str) -> int:
    number = _number(value, f"{where} `rank`")
    if number is None or number != int(number) or number < 1:
        raise InvalidSnapshot(f"{where} `rank` must be a whole number >= 1, got {value!r}")
    return int(number)


def _text(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidSnapshot(f"{where} is {_kind(value)}, expected text")


def _kind(value: Any) -> str:
    if value is None:
        return "missing or null"
    return f"a JSON {type(value).__name__}"


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """One point of `GET /assets/{id}/history`: a price at a time (and supply, if sent)."""

    time_ms: int
    price_usd: float
    circulating_supply: float | None


@dataclass(frozen=True, slots=True)
class HistoryWindow:
    """A validated history body; `skipped` as for snapshots (dust prices printed as 0)."""

    points: tuple[HistoryPoint, ...]
    skipped: tuple[str, ...] = ()


def parse_history(raw: bytes) -> HistoryWindow:
    """Validate a raw history body: fields `priceUsd`, `time`, `date`, `circulatingSupply`."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidSnapshot(f"body is not JSON ({exc.__class__.__name__}: {exc})") from None
    notice = shutdown_notice(body)
    if notice is not None:
        raise InvalidSnapshot(f"`data` is an object, not a list (v2 shutdown body?): {notice}")
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise InvalidSnapshot(f"`data` is {_kind(data)}, expected a list of points")
    points: list[HistoryPoint] = []
    skipped: list[str] = []
    seen: set[int] = set()
    for position, item in enumerate(data):
        where = f"point #{position}"
        if not isinstance(item, dict):
            raise InvalidSnapshot(f"{where} is {_kind(item)}, expected an object")
        time_ms = item.get("time")
        if isinstance(time_ms, bool) or not isinstance(time_ms, int) or time_ms <= 0:
            raise InvalidSnapshot(
                f"{where} `time` is {_kind(time_ms)}, expected epoch milliseconds"
            )
        if time_ms in seen:
            raise InvalidSnapshot(f"duplicate time {time_ms}")
        seen.add(time_ms)
        price = _number(item.get("priceUsd"), f"{where} `priceUsd`")
        if price is None or price < 0:
            raise InvalidSnapshot(f"{where} `priceUsd` must be a non-negative number")
        if price == 0:
            skipped.append(f"{where}: priceUsd is {item['priceUsd']!r}")
            continue
        supply = _number(item.get("circulatingSupply"), f"{where} `circulatingSupply`")
        points.append(HistoryPoint(time_ms, price, supply))
    return HistoryWindow(
        points=tuple(sorted(points, key=lambda p: p.time_ms)), skipped=tuple(skipped)
    )


LIVE_CLOCK_SKEW = timedelta(minutes=10)
LIVE_MAX_AGE = timedelta(hours=6)


def check_live_time(snapshot: Snapshot, now: datetime) -> None:
    """A live snapshot must describe the market about now. One from the future is a broken
    clock upstream; one hours old is a stale cache (a replay is old by design: not checked).
    Either would put a point in the wrong place of the history, so it is quarantined."""
    taken = snapshot.taken_at
    if taken > now + LIVE_CLOCK_SKEW:
        raise InvalidSnapshot(
            f"`timestamp` {taken.isoformat()} is in the future (now {now:%H:%M:%S}Z)"
        )
    if taken < now - LIVE_MAX_AGE:
        raise InvalidSnapshot(
            f"`timestamp` {taken.isoformat()} is {(now - taken).days} day(s) "
            f"{(now - taken).seconds // 3600} hour(s) old: a stale response, not the market now"
        )
