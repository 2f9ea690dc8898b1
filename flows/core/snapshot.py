"""Parse and validate one CoinCap `/assets` body: the gate before anything is stored as good.

Plain Python, no Prefect and no I/O, so every rule here is unit-tested directly.

The rules match what the warehouses can store, so a body accepted here can always be
loaded (DuckDB and BigQuery alike): ranks fit a 32-bit integer, numbers are finite doubles
written in plain ASCII decimal notation, text is valid UTF-8 without control characters,
market cap, supply and volume are not negative, timestamps fall between 2009 and 2100.

One bad coin hurts only itself: an asset that breaks a rule is left out with a reason
(`Snapshot.skipped`, recorded by the loader as a dead letter) and the rest of the snapshot
loads. A body is rejected whole only when it is broken as a whole: not JSON, not the
`/assets` shape, a duplicated id or key (which copy is right?), or more than
`MAX_INVALID_SHARE` of its assets unusable. Whatever the bytes, parsing raises nothing but
`InvalidSnapshot` (a hypothesis test feeds it arbitrary bytes and arbitrary JSON).

Precision: CoinCap sends numbers as strings with up to 16 decimals. We check each one
with `Decimal` (exact) and keep it as an IEEE double, which holds 15-17 significant digits:
far more than any price, supply or market cap carries in meaning, and, unlike a fixed-scale
DECIMAL(38, 9), it keeps the relative precision of micro-cap prices such as 1.3e-08. The
exact strings stay in the raw lake file, so nothing is lost for good.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

# Ids are CoinCap's slugs ("bitcoin", and real oddities like "boringdao-[old]"). One may end
# up in a lake path or URL, so no separators, control characters or leading dot.
ASSET_ID_PATTERN = re.compile(r"[^./\\\x00-\x1f\x7f][^/\\\x00-\x1f\x7f]{0,127}")
# Numbers as strings: plain decimal notation in ASCII digits. No exponent ("1e5"), no `_`
# separators and no non-ASCII digits ("١٢٣"), all of which Python's Decimal would accept:
# CoinCap never sends them, and a warehouse's own cast may read them differently.
PLAIN_DECIMAL = re.compile(r"-?[0-9]{1,40}(?:\.[0-9]{1,40})?")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")

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
# A negative amount of any of these is a broken value, not a market fact (the change may be).
NON_NEGATIVE_FIELDS = ("supply", "maxSupply", "marketCapUsd", "volumeUsd24Hr", "vwap24Hr")
# Longest text kept per field; CoinCap's longest name in the recorded body is 32 characters.
TEXT_FIELDS = {"symbol": 64, "name": 256, "explorer": 2048}
# The raw tables' `rank integer` (DuckDB: 32-bit; BigQuery INT64 holds more).
MAX_RANK = 2**31 - 1
# Market time before Bitcoin or after 2100 is a broken clock or field, not a snapshot.
EARLIEST_MS = 1230768000000  # 2009-01-01T00:00:00Z
LATEST_MS = 4102444800000  # 2100-01-01T00:00:00Z
# More unusable assets than this share (beyond the first few) means the body is broken.
MAX_INVALID_SHARE = 0.1


def safe_text(text: str) -> str:
    """Text any store can hold: upstream characters that are not valid UTF-8 (a lone
    surrogate) become backslash escapes, so a reason quoting them cannot break a note,
    a log line or a warehouse row."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class InvalidSnapshot(ValueError):
    """The body must not reach the warehouse; `reason` says why in one line."""

    def __init__(self, reason: str) -> None:
        reason = safe_text(reason)
        super().__init__(reason)
        self.reason = reason


class BadValue(ValueError):
    """One asset (or history point) breaks a rule: it is skipped, the body is not."""


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
    # Assets left out, each with why. `skipped`: a price of 0, CoinCap's way of printing a
    # price below 1e-16 at 16 decimals (a fact). `rejected`: a value that breaks a rule (a
    # defect, recorded as a dead letter). The rest of the snapshot loads either way.
    skipped: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()

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
        return str(message)[:300]
    return None


def _refuse_constant(name: str) -> Any:
    raise InvalidSnapshot(f"body holds the non-standard JSON constant {name}")


def _object_without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        keys = [key for key, _ in pairs]
        twice = next(key for key in keys if keys.count(key) > 1)
        raise InvalidSnapshot(f"a JSON object repeats the key {twice[:40]!r}")
    return result


def load_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity literals, no repeated keys in an object."""
    try:
        return json.loads(
            raw,
            parse_constant=_refuse_constant,
            object_pairs_hook=_object_without_duplicate_keys,
        )
    except InvalidSnapshot:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidSnapshot(f"body is not JSON ({exc.__class__.__name__}: {exc})") from None
    except RecursionError:
        raise InvalidSnapshot("body is JSON nested too deeply to be an `/assets` answer") from None


T = TypeVar("T")


def parse_snapshot(raw: bytes, *, max_assets: int | None = None) -> Snapshot:
    """Validate a raw `/assets` body; raise `InvalidSnapshot` on anything we would not load,
    and nothing else, whatever the bytes."""
    return only_invalid_snapshot(_parse_snapshot, raw, max_assets)


def only_invalid_snapshot(parse: Callable[..., T], raw: bytes, *args: Any) -> T:
    """`parse(raw, *args)`, any error but `InvalidSnapshot` turned into one: a rule we did
    not foresee must still be a quarantine, never a crash of the tick."""
    try:
        return parse(raw, *args)
    except InvalidSnapshot:
        raise
    except Exception as exc:
        raise InvalidSnapshot(
            f"body could not be validated ({exc.__class__.__name__}: {str(exc)[:200]})"
        ) from None


def tick_body(raw: bytes, items: str, empty: str) -> tuple[list[Any], int]:
    """What `/assets` and `/rates` bodies share: a JSON object whose `data` is a non-empty
    list, with the API's own `timestamp`; (data, timestamp ms). `items` names the list's
    entries in a refusal, `empty` says why an empty list is refused."""
    body = load_json(raw)
    if not isinstance(body, dict):
        raise InvalidSnapshot(f"body is a JSON {type(body).__name__}, expected an object")
    notice = shutdown_notice(body)
    if notice is not None:
        raise InvalidSnapshot(f"`data` is an object, not a list (v2 shutdown body?): {notice}")
    data = body.get("data")
    if not isinstance(data, list):
        raise InvalidSnapshot(f"`data` is {kind_of(data)}, expected a list of {items}")
    timestamp = epoch_ms(body.get("timestamp"), "`timestamp`")
    if not data:
        raise InvalidSnapshot(f"`data` is empty: {empty}")
    return data, timestamp


def refuse_if_broken(rejected: list[str], total: int, items: str, what: str) -> None:
    """Many unusable entries mean a broken body, not a few bad ones: refuse it whole."""
    if len(rejected) > max(3, MAX_INVALID_SHARE * total):
        raise InvalidSnapshot(
            f"{len(rejected)} of {total} {items} are unusable, a broken body rather than a "
            f"few bad {what}; first: {rejected[0]}"
        )


def _parse_snapshot(raw: bytes, max_assets: int | None) -> Snapshot:
    data, timestamp = tick_body(raw, "assets", "an answer about no coin is not a snapshot")
    if max_assets is not None and len(data) > max_assets:
        raise InvalidSnapshot(f"{len(data)} assets returned but at most {max_assets} were asked")
    assets: list[Asset] = []
    skipped: list[str] = []
    rejected: list[str] = []
    for item in _iter_assets(data):
        if isinstance(item, Asset):
            assets.append(item)
        else:
            (rejected if item.invalid else skipped).append(item.reason)
    refuse_if_broken(rejected, len(data), "assets", "coins")
    return Snapshot(
        timestamp_ms=timestamp,
        assets=tuple(assets),
        skipped=tuple(skipped),
        rejected=tuple(rejected),
    )


@dataclass(frozen=True, slots=True)
class _Skip:
    reason: str
    invalid: bool  # False for a dust price printed as 0: a fact, not a defect


def _iter_assets(data: list[Any]) -> Iterator[Asset | _Skip]:
    """Each valid asset, or why one is skipped; raises only on a body broken as a whole."""
    seen: set[str] = set()
    for position, item in enumerate(data):
        where = f"asset #{position}"
        asset_id = item.get("id") if isinstance(item, dict) else None
        if isinstance(asset_id, str) and ASSET_ID_PATTERN.fullmatch(asset_id) and is_utf8(asset_id):
            where = f"asset {asset_id!r}"
            if asset_id in seen:
                raise InvalidSnapshot(f"duplicate id {asset_id!r}")
            seen.add(asset_id)
        try:
            yield _asset(item, where)
        except BadValue as exc:
            yield _Skip(f"{where}: {exc}", invalid=True)
        except _DustPrice as exc:
            yield _Skip(f"{where}: {exc}", invalid=False)


class _DustPrice(Exception):
    """priceUsd "0.0000000000000000": below what 16 decimals show."""


def _asset(item: Any, where: str) -> Asset:
    if not isinstance(item, dict):
        raise BadValue(f"is {kind_of(item)}, expected an object")
    for name in REQUIRED_FIELDS:
        if item.get(name) is None:
            raise BadValue(f"lacks required field `{name}`")
    asset_id = item["id"]
    if not isinstance(asset_id, str) or not ASSET_ID_PATTERN.fullmatch(asset_id):
        raise BadValue(f"has an unusable id {preview(asset_id)}")
    if not is_utf8(asset_id):
        raise BadValue("has an id that is not valid UTF-8 text")
    numbers = {
        column: number_field(item.get(name), f"`{name}`") for name, column in NUMERIC_FIELDS.items()
    }
    for name in NON_NEGATIVE_FIELDS:
        value = numbers[NUMERIC_FIELDS[name]]
        if value is not None and value < 0:
            raise BadValue(f"`{name}` must not be negative, got {preview(item[name])}")
    price = numbers["price_usd"]
    if price is None or price < 0:
        raise BadValue(f"`priceUsd` must not be negative, got {preview(item['priceUsd'])}")
    if price == 0:
        raise _DustPrice(f"priceUsd is {preview(item['priceUsd'])} (below what 16 decimals show)")
    texts = {
        name: text_field(item.get(name), f"`{name}`", limit) for name, limit in TEXT_FIELDS.items()
    }
    return Asset(
        id=asset_id,
        rank=_rank(item["rank"]),
        symbol=texts["symbol"],
        name=texts["name"],
        supply=numbers["supply"],
        max_supply=numbers["max_supply"],
        market_cap_usd=numbers["market_cap_usd"],
        volume_usd_24hr=numbers["volume_usd_24hr"],
        price_usd=price,
        change_percent_24hr=numbers["change_percent_24hr"],
        vwap_24hr=numbers["vwap_24hr"],
        explorer=texts["explorer"],
    )


def number_field(value: Any, where: str) -> float | None:
    """A finite double from a JSON number or a plain decimal string."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadValue(f"{where} is {kind_of(value)}, expected a number")
    if isinstance(value, str) and not PLAIN_DECIMAL.fullmatch(value):
        raise BadValue(f"{where} is not a plain decimal number: {preview(value)}")
    try:
        exact = Decimal(value if isinstance(value, str) else repr(value))
        as_float = float(exact)
    except (InvalidOperation, OverflowError, ValueError):
        raise BadValue(f"{where} is not a number: {preview(value)}") from None
    if not exact.is_finite() or not math.isfinite(as_float):
        raise BadValue(f"{where} is not finite or overflows a double: {preview(value)}")
    return as_float


def _rank(value: Any) -> int:
    number = number_field(value, "`rank`")
    if number is None or number != int(number) or not 1 <= number <= MAX_RANK:
        raise BadValue(f"`rank` must be a whole number from 1 to {MAX_RANK}, got {preview(value)}")
    return int(number)


def text_field(value: Any, where: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadValue(f"{where} is {kind_of(value)}, expected text")
    if not is_utf8(value):
        raise BadValue(f"{where} is not valid UTF-8 text (a lone surrogate?)")
    if CONTROL_CHARACTERS.search(value):
        raise BadValue(f"{where} holds a control character")
    if len(value) > limit:
        raise BadValue(f"{where} is {len(value)} characters long, more than {limit}")
    return value


def is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def epoch_ms(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSnapshot(f"{where} is {kind_of(value)}, expected epoch milliseconds")
    if not EARLIEST_MS <= value < LATEST_MS:
        raise InvalidSnapshot(f"{where} {value} is not between 2009 and 2100 in epoch milliseconds")
    return int(value)


def preview(value: Any) -> str:
    """A value as a short, printable quote for a reason (upstream text may be anything)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def kind_of(value: Any) -> str:
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
    """A validated history body; `skipped` and `rejected` as for snapshots (points outside
    the window asked for are skipped)."""

    points: tuple[HistoryPoint, ...]
    skipped: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()


def parse_history(raw: bytes, *, window: tuple[int, int] | None = None) -> HistoryWindow:
    """Validate a raw history body: fields `priceUsd`, `time`, `date`, `circulatingSupply`.

    With `window` (start, end ms), the answer must be about that window: points outside it
    are skipped, and an answer with points but none inside is rejected, since a server that
    ignores `start`/`end` would otherwise mark the window done with nothing in it."""
    try:
        return _parse_history(raw, window)
    except InvalidSnapshot:
        raise
    except Exception as exc:
        raise InvalidSnapshot(
            f"body could not be validated ({exc.__class__.__name__}: {str(exc)[:200]})"
        ) from None


def _parse_history(raw: bytes, window: tuple[int, int] | None) -> HistoryWindow:
    body = load_json(raw)
    notice = shutdown_notice(body)
    if notice is not None:
        raise InvalidSnapshot(f"`data` is an object, not a list (v2 shutdown body?): {notice}")
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise InvalidSnapshot(f"`data` is {kind_of(data)}, expected a list of points")
    points: list[HistoryPoint] = []
    skipped: list[str] = []
    rejected: list[str] = []
    outside = 0
    seen: set[int] = set()
    for position, item in enumerate(data):
        where = f"point #{position}"
        if not isinstance(item, dict):
            raise InvalidSnapshot(f"{where} is {kind_of(item)}, expected an object")
        time_ms = epoch_ms(item.get("time"), f"{where} `time`")
        if time_ms in seen:
            raise InvalidSnapshot(f"duplicate time {time_ms}")
        seen.add(time_ms)
        if window is not None and not window[0] <= time_ms < window[1]:
            outside += 1
            continue
        try:
            price = number_field(item.get("priceUsd"), "`priceUsd`")
            if price is None or price < 0:
                raise BadValue("`priceUsd` must be a non-negative number")
            supply = number_field(item.get("circulatingSupply"), "`circulatingSupply`")
            if supply is not None and supply < 0:
                raise BadValue("`circulatingSupply` must not be negative")
        except BadValue as exc:
            rejected.append(f"{where}: {exc}")
            continue
        if price == 0:
            skipped.append(f"{where}: priceUsd is {preview(item['priceUsd'])}")
            continue
        points.append(HistoryPoint(time_ms, price, supply))
    if outside and not points and not rejected:
        raise InvalidSnapshot(
            f"none of the {outside} points is inside the window asked for: the server "
            "ignored `start`/`end`"
        )
    if outside:
        skipped.append(f"{outside} point(s) outside the window asked for")
    if len(rejected) > max(3, MAX_INVALID_SHARE * len(data)):
        raise InvalidSnapshot(
            f"{len(rejected)} of {len(data)} points are unusable; first: {rejected[0]}"
        )
    return HistoryWindow(
        points=tuple(sorted(points, key=lambda p: p.time_ms)),
        skipped=tuple(skipped),
        rejected=tuple(rejected),
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
