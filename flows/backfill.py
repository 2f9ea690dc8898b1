"""backfill: years of prices on day one, from CoinCap's `/assets/{id}/history`.

    python -m flows.backfill --coins bitcoin,ethereum --interval h1 \
        --start 2025-01-01 --end 2025-02-01

Each (coin, window) response is written to the lake before anything is loaded, once; a
window whose file is in the lake is done, so a killed backfill resumes where it stopped
without fetching a finished window again. Requests are polite: a user-set number at once
and per minute (CoinCap has published about 200/min without a key, 500 with one), and 429
answers wait for `Retry-After` (in the client). With the replay source, history comes from
the bundled 2021 data through the same HTTP code path (daily points: interval d1).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from flows.adapters.coincap import CoinCapClient
from flows.adapters.lake import Lake
from flows.adapters.source import DAY_MS, resolve_source
from flows.adapters.targets import resolve_target
from flows.core.lake_layout import INTERVALS, HistoryKey, history_path
from flows.core.settings import MAINTENANCE_TIMEOUT_SECONDS, get_settings
from flows.core.snapshot import InvalidSnapshot, parse_history, parse_snapshot
from flows.load import load
from flows.runtime.cli import finish
from flows.runtime.locking import exclusive_run
from flows.transform import transform

# Window sizes that keep each answer near what CoinCap gives without start/end
# (720 hourly points = 30 days in the recorded body): m5 288 points, h1 720, d1 365.
WINDOW_DAYS = {"m5": 1, "h1": 30, "d1": 365}


def history_windows(start_ms: int, end_ms: int, interval: str) -> list[tuple[int, int]]:
    """Split [start, end) into windows on a fixed UTC grid of the interval's window size,
    clipped to the range: the same command always asks for the same windows (so a rerun
    resumes), and a window never spans more than the API answers at once."""
    if interval not in WINDOW_DAYS:
        raise ValueError(f"unknown interval {interval!r}, expected one of {INTERVALS}")
    if start_ms >= end_ms:
        raise ValueError("start must be before end")
    size = WINDOW_DAYS[interval] * DAY_MS
    windows = []
    cell = start_ms - start_ms % size
    while cell < end_ms:
        windows.append((max(cell, start_ms), min(cell + size, end_ms)))
        cell += size
    return windows


class RateLimiter:
    """At most `per_minute` acquisitions in any rolling minute, shared by threads."""

    def __init__(
        self,
        per_minute: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 60.0 / per_minute
        self._clock = clock
        self._sleep = sleep
        self._next = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for a slot; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        wait = slot - now
        if wait > 0:
            self._sleep(wait)
        return wait


@dataclass
class BackfillResult:
    windows_total: int = 0
    windows_already_in_lake: int = 0
    windows_fetched: int = 0
    points_fetched: int = 0
    failures: dict[str, str] = field(default_factory=dict)


def parse_day(text: str) -> int:
    """'2025-01-01' (UTC midnight) or epoch milliseconds."""
    if text.isdigit():
        return int(text)
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def top_coins(client: CoinCapClient, count: int) -> list[str]:
    """The current top `count` coin ids by rank."""
    pages = client.fetch_asset_pages(count)
    return [asset.id for page in pages for asset in parse_snapshot(page).assets][:count]


class Progress:
    """Progress in the Prefect UI (an artifact) and, from a terminal, a bar on stderr."""

    def __init__(self, total: int, description: str) -> None:
        self.total, self.done = total, 0
        self._lock = threading.Lock()
        self._artifact = create_progress_artifact(progress=0.0, description=description)
        self._tty = sys.stderr.isatty()

    def advance(self) -> None:
        with self._lock:
            self.done += 1
            percent = 100.0 * self.done / max(self.total, 1)
            update_progress_artifact(artifact_id=cast(UUID, self._artifact), progress=percent)
            if self._tty:
                bar = "#" * int(percent // 4)
                sys.stderr.write(f"\rbackfill [{bar:<25}] {self.done}/{self.total} windows")
                if self.done == self.total:
                    sys.stderr.write("\n")
                sys.stderr.flush()


@flow(name="backfill", timeout_seconds=MAINTENANCE_TIMEOUT_SECONDS)
def backfill(
    coins: list[str] | None = None,
    interval: str = "d1",
    start: str | None = None,
    end: str | None = None,
    top: int = 100,
) -> BackfillResult:
    """Fetch history windows into the lake, then load and build as a pipeline tick does."""
    logger = get_run_logger()
    settings = get_settings()
    source = resolve_source(settings)
    lake: Lake = resolve_target(settings).lake
    source.check_fits(lake)
    if not source.live:
        logger.warning("Backfilling from the %s (no CoinCap API key is set).", source.label)
    default_start, default_end = source.history_window(int(time.time() * 1000))
    start_ms = parse_day(start) if start else default_start
    end_ms = parse_day(end) if end else default_end
    result = BackfillResult()

    with (
        source.endpoint(lake) as base_url,
        source.client(base_url) as client,
    ):
        coin_ids = coins or top_coins(client, top)
        keys = [
            HistoryKey(source.name, interval, coin_id, window_start, window_end)
            for coin_id in coin_ids
            for window_start, window_end in history_windows(start_ms, end_ms, interval)
        ]
        result.windows_total = len(keys)
        pending = [key for key in keys if not lake.has(history_path(key))]
        result.windows_already_in_lake = len(keys) - len(pending)
        logger.info(
            "%d coin(s), %s, %d window(s): %d already in the lake, %d to fetch.",
            len(coin_ids),
            interval,
            len(keys),
            result.windows_already_in_lake,
            len(pending),
        )
        progress = Progress(len(pending), f"backfill {interval} of {len(coin_ids)} coin(s)")
        limiter = RateLimiter(source.requests_per_minute)

        def fetch(key: HistoryKey) -> int:
            limiter.acquire()
            raw = client.fetch_history(key.coin_id, key.interval, key.start_ms, key.end_ms)
            try:
                window = parse_history(raw, window=(key.start_ms, key.end_ms))
            except InvalidSnapshot as exc:
                # a dead letter of the window: kept with why, not marked done, reported
                lake.quarantine(
                    source.name,
                    raw,
                    exc.reason,
                    kind="history",
                    stage="backfill",
                    context={"window": history_path(key)},
                )
                raise
            lake.write_history(key, raw)
            return len(window.points)

        with ThreadPoolExecutor(max_workers=settings.backfill_concurrency) as pool:
            futures = {pool.submit(fetch, key): key for key in pending}
            for future in as_completed(futures):
                key = futures[future]
                try:
                    result.points_fetched += future.result()
                    result.windows_fetched += 1
                except Exception as exc:  # recorded, reported, and the run fails below
                    result.failures[history_path(key)] = str(exc)
                    logger.error("window %s failed: %s", history_path(key), exc)
                progress.advance()

    logger.info("Fetched %d window(s), %d point(s).", result.windows_fetched, result.points_fetched)
    with exclusive_run(settings.pipeline_lock_path, timeout_seconds=settings.lock_timeout_seconds):
        load()
        transform()
    if result.failures:
        raise RuntimeError(
            f"{len(result.failures)} window(s) failed (rerun to retry only those): "
            f"{list(result.failures)[:5]}"
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="Backfill coin price history into the lake.")
    parser.add_argument("--coins", help="comma-separated coin ids (default: the current top N)")
    parser.add_argument("--top", type=int, default=100, help="N when --coins is not given")
    parser.add_argument("--interval", choices=INTERVALS, default="d1")
    parser.add_argument("--start", help="YYYY-MM-DD or epoch ms (default: a year ago)")
    parser.add_argument("--end", help="YYYY-MM-DD or epoch ms, exclusive (default: now)")
    args = parser.parse_args()
    coins = [c.strip() for c in args.coins.split(",") if c.strip()] if args.coins else None
    finish(
        backfill(
            coins=coins,
            interval=args.interval,
            start=args.start,
            end=args.end,
            top=args.top,
            return_state=True,
        ),
        lambda r: (
            f"Backfill: {r.windows_fetched} window(s) fetched ({r.points_fetched:,} points), "
            f"{r.windows_already_in_lake} already in the lake, {len(r.failures)} failed."
        ),
    )


if __name__ == "__main__":
    main()
