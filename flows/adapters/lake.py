"""The raw data lake: every API body we accepted, once, gzip-compressed, forever.

Built on fsspec so the same code writes a local folder or `gs://bucket/...`. Layout:

    raw/<source>/assets/date=YYYY-MM-DD/<api timestamp ms>.json.gz
    raw/<source>/history/interval=<m5|h1|d1>/coin=<id>/<start ms>-<end ms>.json.gz
    quarantine/<source>/<stage>/...  (+ .reason.json beside each body)

`<source>` is `coincap` (live) or `replay` (bundled 2021 data), so replayed data can
never be mistaken for live data, by a person or by a query.

The quarantine is the dead-letter store of every stage: bodies the fetch refused
(`fetch/assets/date=<day>/<ms>-<sha>.json.gz`, `fetch/history/...`) and lake files a later
stage refused, moved there under their own relative name (`load/assets/date=.../<ms>.json.gz`),
each with a note saying which stage refused it and why. Only names of the layout above are
read; anything else under `raw/` is reported and left alone.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import posixpath
import time
import uuid
import zlib
from datetime import UTC, datetime
from typing import Any, Literal

import fsspec
from fsspec import AbstractFileSystem

from flows.core.lake_layout import (
    HISTORY_GLOB,
    SNAPSHOT_GLOB,
    SOURCES,
    STAGES,
    HistoryKey,
    LakeFileUnreadable,
    LakeScan,
    LakeWrite,
    StoredFile,
    history_path,
    is_history_name,
    is_rates_name,
    is_snapshot_name,
    rates_path,
    snapshot_path,
    source_of,
)

log = logging.getLogger(__name__)

# Written beside their target, then renamed; one older than this is a killed writer's.
TEMPORARY_MAX_AGE_SECONDS = 600
# A lake file inflating past this is not one of ours (a 2,000-asset body is ~0.8 MB).
MAX_FILE_BYTES = 64 * 2**20
# File systems whose rename is atomic: write beside the target, then rename. Object stores
# (gs://) have no rename (fsspec copies), but a single upload is atomic there already.
ATOMIC_RENAME_PROTOCOLS = {"file", "local"}


def _sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


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
        return self._write_once(snapshot_path(source, timestamp_ms), raw)

    def write_rates(self, source: str, timestamp_ms: int, raw: bytes) -> LakeWrite:
        """Write a `/rates` body once, under its own timestamp."""
        return self._write_once(rates_path(source, timestamp_ms), raw)

    def write_history(self, key: HistoryKey, raw: bytes) -> LakeWrite:
        """Write a history window once; its presence is also the backfill's checkpoint."""
        return self._write_once(history_path(key), raw)

    def _write_once(self, relative: str, raw: bytes) -> LakeWrite:
        full = self._full(relative)
        if self.fs.exists(full):
            return LakeWrite(relative, created=False)
        self._write_atomically(full, _gzip(raw))
        return LakeWrite(relative, created=True)

    def has(self, relative: str) -> bool:
        return bool(self.fs.exists(self._full(relative)))

    def list_history(self) -> list[str]:
        """Every history window file in the lake, relative paths."""
        found = (self._relative(p) for p in self.fs.glob(self._full(HISTORY_GLOB)))
        return sorted(p for p in found if is_history_name(p))

    def quarantine(
        self,
        source: str,
        raw: bytes,
        reason: str,
        *,
        kind: str = "assets",
        stage: str = "fetch",
        context: dict[str, object] | None = None,
    ) -> str:
        """Keep a body a fetch refused (a tick's `fetch`, or a `backfill` window), and why,
        next to each other. The name is the time it was refused (data, not a watermark)
        and the body's digest."""
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}")
        if kind not in ("assets", "rates", "history"):
            raise ValueError(f"unknown kind {kind!r}")
        if stage not in ("fetch", "backfill"):
            raise ValueError(f"unknown stage {stage!r}")
        now = datetime.now(tz=UTC)
        digest = _sha256(raw)[:12]
        day, millis = now.date().isoformat(), int(now.timestamp() * 1000)
        stem = f"quarantine/{source}/{stage}/{kind}/date={day}/{millis}-{digest}"
        self._write_atomically(self._full(f"{stem}.json.gz"), _gzip(raw))
        note = {
            "stage": stage,
            "reason": reason,
            "quarantined_at": now.isoformat(),
            "bytes": len(raw),
            **(context or {}),
        }
        self._write_atomically(
            self._full(f"{stem}.reason.json"), json.dumps(note, indent=2).encode()
        )
        return f"{stem}.json.gz"

    def dead_letter_path(self, relative: str, stage: str) -> str:
        """Where a lake file refused by `stage` is kept: its own name under the stage's
        folder, so moving it again (after a crash mid-move) lands on the same file."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}, expected one of {STAGES}")
        source = source_of(relative)
        return f"quarantine/{source}/{stage}/{relative.removeprefix(f'raw/{source}/')}"

    def dead_letter(self, relative: str, stage: str, reason: str, *, remove: bool = True) -> str:
        """Move a lake file a later stage cannot use out of `raw/`, with a note. Copy and
        note first, then delete: a crash in between leaves the file in both places, and
        the next run moves it again onto the same name. `remove=False` leaves the original
        for the caller to `remove` once it has done its own part."""
        kept = self.dead_letter_path(relative, stage)
        stored = self.fs.cat_file(self._full(relative))
        # A retry after a crash finds the copy (and its note) there already: written once,
        # never overwritten (on GCS the pipeline may not overwrite: that needs delete).
        if not self._holds(kept, stored):
            self._write_atomically(self._full(kept), stored)
        note_path = kept.removesuffix(".json.gz") + ".reason.json"
        if self.fs.exists(self._full(note_path)):
            if remove:
                self.remove(relative)
            return kept
        note = {
            "stage": stage,
            "reason": reason,
            "lake_path": relative,
            "quarantined_at": datetime.now(tz=UTC).isoformat(),
            "stored_bytes": len(stored),
            "sha256": _sha256(stored),
        }
        self._write_atomically(self._full(note_path), json.dumps(note, indent=2).encode())
        if remove:
            self.remove(relative)
        return kept

    def _holds(self, relative: str, payload: bytes) -> bool:
        """Whether `relative` exists with exactly these bytes."""
        full = self._full(relative)
        try:
            return bool(self.fs.size(full) == len(payload) and self.fs.cat_file(full) == payload)
        except FileNotFoundError:
            return False

    def remove(self, relative: str) -> None:
        """Delete a file of `raw/` (after `dead_letter(..., remove=False)`); gone is fine."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._full(relative))

    def quarantine_notes(
        self, skip: set[str] | frozenset[str] = frozenset()
    ) -> list[tuple[str, dict[str, object]]]:
        """Every dead letter's note (path of the kept body, note), oldest name first; notes
        of bodies in `skip` (recorded already) are not read."""
        notes = []
        for full in sorted(self.fs.glob(self._full("quarantine/**/*.reason.json"))):
            relative = self._relative(full)
            if relative.removesuffix(".reason.json") + ".json.gz" in skip:
                continue
            try:
                note = json.loads(self.fs.cat_file(full))
            except (ValueError, OSError) as exc:
                note = {"reason": f"note unreadable ({exc.__class__.__name__})"}
            if not isinstance(note, dict):
                note = {"reason": "note is not a JSON object"}
            notes.append((relative.removesuffix(".reason.json") + ".json.gz", note))
        return notes

    def _write_atomically(self, full: str, payload: bytes) -> None:
        """Readers never see half a file: on a file system, write beside the target, fsync,
        rename, fsync the folder (so a power cut keeps either the old state or the whole
        new file); on an object store, one upload (atomic there; a rename would be a copy)."""
        if not self._rename_is_atomic:
            self.fs.pipe_file(full, payload)
            return
        directory, name = posixpath.split(full)
        os.makedirs(directory, exist_ok=True)
        temporary = f"{directory}/.{name}.{uuid.uuid4().hex}.tmp"
        try:
            with open(temporary, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, full)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        folder = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def clean_temporary(
        self, temporary: list[str], older_than_seconds: float = TEMPORARY_MAX_AGE_SECONDS
    ) -> int:
        """Remove the temporary files (from `scan`) left by killed writers; a live writer's
        is seconds old."""
        if not self._rename_is_atomic:
            return 0
        removed = 0
        for relative in temporary:
            full = self._full(relative)
            try:
                if time.time() - os.path.getmtime(full) > older_than_seconds:
                    os.remove(full)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def stage(self, lake_path: str, suffix: str, payload: bytes) -> str:
        """Write a derived copy of a lake file for a warehouse to load (BigQuery load jobs
        read newline-delimited rows from gs://, not API bodies) under `staged/`, which no
        loader lists; returns its URL. Rewriting it is harmless: same file, same rows."""
        relative = "staged/" + lake_path.removesuffix(".json.gz") + suffix
        self._write_atomically(self._full(relative), payload)
        return f"{self.url.rstrip('/')}/{relative}"

    def read(self, relative: str) -> bytes:
        """The raw body of a lake file, decompressed."""
        return self.read_stored(relative).body

    def read_stored(self, relative: str, max_bytes: int = MAX_FILE_BYTES) -> StoredFile:
        """A lake file's body with the size and digest of its stored bytes; a file that is
        empty, not gzip or inflates past `max_bytes` raises `LakeFileUnreadable`."""
        stored = self.fs.cat_file(self._full(relative))
        if not stored:
            raise LakeFileUnreadable("the file is empty (0 bytes)")
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(stored, max_bytes + 1)
        except zlib.error as exc:
            raise LakeFileUnreadable(f"the file is not gzip ({exc})") from None
        if len(body) > max_bytes or inflater.unconsumed_tail:
            raise LakeFileUnreadable(f"the file inflates to more than {max_bytes:,} bytes")
        if not inflater.eof:
            raise LakeFileUnreadable("the file is a truncated gzip stream")
        return StoredFile(relative, body, len(stored), _sha256(stored))

    def stored_digest(self, relative: str) -> tuple[int, str] | None:
        """Size and SHA-256 of a file's stored bytes, or None when it is gone."""
        try:
            stored = self.fs.cat_file(self._full(relative))
        except FileNotFoundError:
            return None
        return len(stored), _sha256(stored)

    def scan(self) -> LakeScan:
        """Loadable files of `raw/`, oldest first, and the names that do not fit the layout
        (reported, never read: a stray file must not stop loading)."""
        result = LakeScan()
        root = self._full("raw")
        for full in self.fs.find(root) if self.fs.exists(root) else []:
            relative = self._relative(full)
            if posixpath.basename(relative).startswith("."):
                result.temporary.append(relative)  # a writer's, perhaps a killed one's
            elif is_snapshot_name(relative):
                result.snapshots.append(relative)
            elif is_rates_name(relative):
                result.rates.append(relative)
            elif is_history_name(relative):
                result.history.append(relative)
            else:
                result.unknown.append(relative)
        result.snapshots.sort(key=_sort_key)
        result.rates.sort(key=_sort_key)
        result.history.sort()
        return result

    def list_snapshots(self) -> list[str]:
        """Every snapshot file in the lake, relative paths, oldest first."""
        found = self.fs.glob(self._full(SNAPSHOT_GLOB))
        relative = (self._relative(p) for p in found)
        return sorted((p for p in relative if is_snapshot_name(p)), key=_sort_key)

    def latest_timestamp(self, source: Literal["coincap", "replay"]) -> int | None:
        """The newest snapshot timestamp of a source, looking only at its newest day."""
        days = sorted(self.fs.glob(self._full(f"raw/{source}/assets/date=*")))
        for day in reversed(days):
            stamps = [
                _timestamp_of(p)
                for p in self.fs.glob(f"{day}/*.json.gz")
                if is_snapshot_name(self._relative(p))
            ]
            if stamps:
                return max(stamps)
        return None


def _timestamp_of(path: str) -> int:
    return int(posixpath.basename(path).split(".", 1)[0])


def _sort_key(relative: str) -> tuple[int, str]:
    return _timestamp_of(relative), relative
