"""The lake's layout: where each kind of file lives and what its name says.

    raw/<source>/assets/date=YYYY-MM-DD/<api timestamp ms>.json.gz
    raw/<source>/rates/date=YYYY-MM-DD/<api timestamp ms>.json.gz  (live only: `/rates`)
    raw/<source>/history/interval=<m5|h1|d1>/coin=<id>/<start ms>-<end ms>.json.gz
    quarantine/<source>/<stage>/...  (+ .reason.json beside each body)

`<source>` is `coincap` (live) or `replay` (bundled 2021 data), so replayed data can
never be mistaken for live data, by a person or by a query. Only names of this layout are
read; anything else under `raw/` is reported and left alone. Pure functions and value types:
the storage itself is `flows.adapters.lake.Lake`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import quote, unquote

from flows.core.snapshot import ASSET_ID_PATTERN

SOURCES = ("coincap", "replay")
SNAPSHOT_GLOB = "raw/*/assets/date=*/*.json.gz"
RATES_GLOB = "raw/*/rates/date=*/*.json.gz"
HISTORY_GLOB = "raw/*/history/interval=*/coin=*/*.json.gz"
INTERVALS = ("m5", "h1", "d1")
STAGES = ("fetch", "load", "build", "backfill")
SNAPSHOT_NAME = re.compile(
    r"raw/(?P<source>coincap|replay)/assets/date=(?P<day>\d{4}-\d{2}-\d{2})/(?P<ms>[1-9]\d{0,14})\.json\.gz"
)
RATES_NAME = re.compile(
    r"raw/(?P<source>coincap|replay)/rates/date=(?P<day>\d{4}-\d{2}-\d{2})/(?P<ms>[1-9]\d{0,14})\.json\.gz"
)
HISTORY_NAME = re.compile(
    r"raw/(?P<source>coincap|replay)/history/interval=(?P<interval>m5|h1|d1)/coin=[^/]+/"
    r"(?P<start>\d{1,15})-(?P<end>\d{1,15})\.json\.gz"
)


@dataclass(frozen=True)
class LakeWrite:
    path: str  # relative to the lake root
    created: bool  # False when the file was already there (a rerun)


class LakeFileUnreadable(ValueError):
    """The stored bytes are not a gzip file of a sane size: the file's fault, not the disk's."""


@dataclass(frozen=True)
class StoredFile:
    """A lake file as stored: its body, and the size and SHA-256 of the stored (gzip) bytes."""

    path: str
    body: bytes
    size_bytes: int
    sha256: str


@dataclass
class LakeScan:
    """What `raw/` holds: loadable files, oldest first, names that are not ours, and the
    temporary files of writers."""

    snapshots: list[str] = field(default_factory=list)
    rates: list[str] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    temporary: list[str] = field(default_factory=list)


def snapshot_path(source: str, timestamp_ms: int) -> str:
    """The one place a snapshot's lake path is made; only validated values go in."""
    return _tick_path(source, "assets", timestamp_ms)


def rates_path(source: str, timestamp_ms: int) -> str:
    """A `/rates` body's lake path, named by the API's own timestamp like a snapshot."""
    return _tick_path(source, "rates", timestamp_ms)


def _tick_path(source: str, kind: str, timestamp_ms: int) -> str:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}, expected one of {SOURCES}")
    if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int) or timestamp_ms <= 0:
        raise ValueError(f"timestamp must be positive epoch milliseconds, got {timestamp_ms!r}")
    day = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC).date().isoformat()
    return f"raw/{source}/{kind}/date={day}/{timestamp_ms}.json.gz"


@dataclass(frozen=True)
class HistoryKey:
    """What a history window file holds, read back from its path."""

    source: str
    interval: str
    coin_id: str
    start_ms: int
    end_ms: int


def history_path(key: HistoryKey) -> str:
    """A backfill window's lake path; the coin id is validated and percent-encoded, so an id
    like `../../etc` can never leave its folder."""
    if key.source not in SOURCES:
        raise ValueError(f"unknown source {key.source!r}, expected one of {SOURCES}")
    if key.interval not in INTERVALS:
        raise ValueError(f"unknown interval {key.interval!r}, expected one of {INTERVALS}")
    if not ASSET_ID_PATTERN.fullmatch(key.coin_id):
        raise ValueError(f"unusable coin id {key.coin_id!r}")
    if not (
        isinstance(key.start_ms, int)
        and isinstance(key.end_ms, int)
        and 0 <= key.start_ms < key.end_ms
    ):
        raise ValueError(f"bad window {key.start_ms!r}..{key.end_ms!r}")
    coin = quote(key.coin_id, safe="")
    return (
        f"raw/{key.source}/history/interval={key.interval}/coin={coin}/"
        f"{key.start_ms}-{key.end_ms}.json.gz"
    )


def is_snapshot_name(relative: str) -> bool:
    """A snapshot file of our layout, whose day folder matches its timestamp."""
    match = SNAPSHOT_NAME.fullmatch(relative)
    return match is not None and snapshot_path(match["source"], int(match["ms"])) == relative


def is_rates_name(relative: str) -> bool:
    match = RATES_NAME.fullmatch(relative)
    return match is not None and rates_path(match["source"], int(match["ms"])) == relative


def is_history_name(relative: str) -> bool:
    match = HISTORY_NAME.fullmatch(relative)
    if not match:
        return False
    try:
        return history_path(history_key(relative)) == relative
    except ValueError:
        return False


def history_key(path: str) -> HistoryKey:
    parts = path.split("/")
    start, end = parts[5].split(".", 1)[0].split("-")
    return HistoryKey(
        source=parts[1],
        interval=parts[3].removeprefix("interval="),
        coin_id=unquote(parts[4].removeprefix("coin=")),
        start_ms=int(start),
        end_ms=int(end),
    )


def source_of(path: str) -> str:
    """`coincap` or `replay`, read back from a lake path."""
    source = path.split("/")[1] if "/" in path else ""
    if source not in SOURCES:
        raise ValueError(f"{path!r} is not a lake path")
    return source


class LakeStore(Protocol):
    """What loading needs of the lake's storage (`flows.adapters.lake.Lake` on a folder or
    a bucket): the core names the calls, the adapter does the I/O."""

    def scan(self) -> LakeScan: ...

    def clean_temporary(self, temporary: list[str]) -> int: ...

    def read_stored(self, relative: str) -> StoredFile: ...

    def stored_digest(self, relative: str) -> tuple[int, str] | None: ...

    def dead_letter(self, relative: str, stage: str, reason: str) -> str: ...

    def quarantine_notes(self, skip: set[str]) -> list[tuple[str, dict[str, object]]]: ...
