"""The raw data lake: every API body we accepted, once, gzip-compressed, forever.

Built on fsspec so the same code writes a local folder or `gs://bucket/...`. Layout:

    raw/<source>/assets/date=YYYY-MM-DD/<api timestamp ms>.json.gz
    raw/<source>/history/interval=<m5|h1|d1>/coin=<id>/<start ms>-<end ms>.json.gz
    quarantine/<source>/assets/date=YYYY-MM-DD/<fetched ms>-<sha256[:12]>.json.gz  (+ .reason.json)

`<source>` is `coincap` (live) or `replay` (bundled 2021 data), so replayed data can
never be mistaken for live data, by a person or by a query.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import posixpath
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, unquote

import fsspec
from fsspec import AbstractFileSystem

SOURCES = ("coincap", "replay")
SNAPSHOT_GLOB = "raw/*/assets/date=*/*.json.gz"
HISTORY_GLOB = "raw/*/history/interval=*/coin=*/*.json.gz"
INTERVALS = ("m5", "h1", "d1")
# File systems whose rename is atomic: write beside the target, then rename. Object stores
# (gs://) have no rename (fsspec copies), but a single upload is atomic there already.
ATOMIC_RENAME_PROTOCOLS = {"file", "local"}


@dataclass(frozen=True)
class LakeWrite:
    path: str  # relative to the lake root
    created: bool  # False when the file was already there (a rerun)


def snapshot_path(source: str, timestamp_ms: int) -> str:
    """The one place a snapshot's lake path is made; only validated values go in."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}, expected one of {SOURCES}")
    if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int) or timestamp_ms <= 0:
        raise ValueError(f"timestamp must be positive epoch milliseconds, got {timestamp_ms!r}")
    day = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC).date().isoformat()
    return f"raw/{source}/assets/date={day}/{timestamp_ms}.json.gz"


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
    from flows.snapshot import ASSET_ID_PATTERN

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
    """`coincap` or `replay`, read back from a snapshot path."""
    source = path.split("/")[1]
    if source not in SOURCES:
        raise ValueError(f"{path!r} is not a snapshot path")
    return source


def _gzip(raw: bytes) -> bytes:
    # mtime=0: the same body always gives the same bytes, so rewrites are harmless.
    return gzip.compress(raw, compresslevel=6, mtime=0)


class Lake:
    """A lake rooted at an fsspec URL (a local path, `file://`, `gs://`, `memory://`).
    `storage_options` go to the file system (gcsfs: credentials, project, endpoint)."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        fs, root = fsspec.core.url_to_fs(url, **storage_options)
        self.fs: AbstractFileSystem = fs
        self.root = root.rstrip("/")
        self.url = url
        protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        self._rename_is_atomic = bool(protocols & ATOMIC_RENAME_PROTOCOLS)

    def _full(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def _relative(self, full: str) -> str:
        return posixpath.relpath(full, self.root)

    def write_snapshot(self, source: str, timestamp_ms: int, raw: bytes) -> LakeWrite:
        """Write a snapshot body once; writing the same snapshot again changes nothing."""
        relative = snapshot_path(source, timestamp_ms)
        full = self._full(relative)
        if self.fs.exists(full):
            return LakeWrite(relative, created=False)
        self._write_atomically(full, _gzip(raw))
        return LakeWrite(relative, created=True)

    def write_history(self, key: HistoryKey, raw: bytes) -> LakeWrite:
        """Write a history window once; its presence is also the backfill's checkpoint."""
        relative = history_path(key)
        full = self._full(relative)
        if self.fs.exists(full):
            return LakeWrite(relative, created=False)
        self._write_atomically(full, _gzip(raw))
        return LakeWrite(relative, created=True)

    def has(self, relative: str) -> bool:
        return bool(self.fs.exists(self._full(relative)))

    def list_history(self) -> list[str]:
        """Every history window file in the lake, relative paths."""
        return sorted(self._relative(p) for p in self.fs.glob(self._full(HISTORY_GLOB)))

    def quarantine(
        self, source: str, raw: bytes, reason: str, *, context: dict[str, object] | None = None
    ) -> str:
        """Keep a rejected body and why it was rejected, next to each other."""
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}")
        now = datetime.now(tz=UTC)
        digest = hashlib.sha256(raw).hexdigest()[:12]
        day, millis = now.date().isoformat(), int(now.timestamp() * 1000)
        stem = f"quarantine/{source}/assets/date={day}/{millis}-{digest}"
        self._write_atomically(self._full(f"{stem}.json.gz"), _gzip(raw))
        note = {
            "reason": reason,
            "quarantined_at": now.isoformat(),
            "bytes": len(raw),
            **(context or {}),
        }
        self._write_atomically(
            self._full(f"{stem}.reason.json"), json.dumps(note, indent=2).encode()
        )
        return f"{stem}.json.gz"

    def _write_atomically(self, full: str, payload: bytes) -> None:
        """Readers never see half a file: on a file system, write beside the target and
        rename; on an object store, one upload (atomic there; a rename would be a copy)."""
        if not self._rename_is_atomic:
            self.fs.pipe_file(full, payload)
            return
        directory, name = posixpath.split(full)
        self.fs.makedirs(directory, exist_ok=True)
        temporary = f"{directory}/.{name}.{uuid.uuid4().hex}.tmp"
        self.fs.pipe_file(temporary, payload)
        try:
            self.fs.mv(temporary, full)
        finally:
            if self.fs.exists(temporary):
                self.fs.rm(temporary)

    def stage(self, lake_path: str, suffix: str, payload: bytes) -> str:
        """Write a derived copy of a lake file for a warehouse to load (BigQuery load jobs
        read newline-delimited rows from gs://, not API bodies) under `staged/`, which no
        loader lists; returns its URL. Rewriting it is harmless: same file, same rows."""
        relative = "staged/" + lake_path.removesuffix(".json.gz") + suffix
        self._write_atomically(self._full(relative), payload)
        return f"{self.url.rstrip('/')}/{relative}"

    def read(self, relative: str) -> bytes:
        """The raw body of a lake file, decompressed."""
        return gzip.decompress(self.fs.cat_file(self._full(relative)))

    def list_snapshots(self) -> list[str]:
        """Every snapshot file in the lake, relative paths, oldest first."""
        found = self.fs.glob(self._full(SNAPSHOT_GLOB))
        return sorted((self._relative(p) for p in found), key=_sort_key)

    def latest_timestamp(self, source: Literal["coincap", "replay"]) -> int | None:
        """The newest snapshot timestamp of a source, looking only at its newest day."""
        days = sorted(self.fs.glob(self._full(f"raw/{source}/assets/date=*")))
        for day in reversed(days):
            stamps = [_timestamp_of(p) for p in self.fs.glob(f"{day}/*.json.gz")]
            if stamps:
                return max(stamps)
        return None


def _timestamp_of(path: str) -> int:
    return int(posixpath.basename(path).split(".", 1)[0])


def _sort_key(relative: str) -> tuple[int, str]:
    return _timestamp_of(relative), relative
