"""extract: CoinCap `/assets` -> validated -> raw lake file (or quarantine, and fail); then,
live only, `/rates` the same way, except that a rates answer we cannot use is quarantined
with its reason and fails nothing: the market snapshot is what the tick is for.

python -m flows.extract [--asset-limit N]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.adapters.coincap import CoinCapError, combine_pages
from flows.adapters.lake import Lake
from flows.adapters.source import Source, resolve_source
from flows.adapters.targets import resolve_target
from flows.core.lake_layout import LakeWrite
from flows.core.rates import parse_rates
from flows.core.settings import (
    EXTRACT_TIMEOUT_SECONDS,
    FETCH_TASK_TIMEOUT_SECONDS,
    RATES_FETCH_DEADLINE_SECONDS,
    RATES_TASK_TIMEOUT_SECONDS,
    get_settings,
)
from flows.core.snapshot import LIVE_CLOCK_SKEW, LIVE_MAX_AGE, InvalidSnapshot, parse_snapshot
from flows.runtime.cli import finish
from flows.runtime.locking import exclusive_run
from flows.runtime.steps import lake_step


class SnapshotRejected(RuntimeError):
    """The API answered, but with a body we will not load; it is kept in quarantine."""


@dataclass(frozen=True)
class ExtractResult:
    source: str
    lake_path: str
    created: bool
    snapshot_at: str
    asset_count: int
    requests: int
    retries: int
    seconds: dict[str, float]  # fetch, validate, lake_write, rates
    # the tick's `/rates` file (live only), or why there is none this tick
    rates_path: str | None = None
    rates_note: str | None = None


@task(cache_policy=NO_CACHE, timeout_seconds=FETCH_TASK_TIMEOUT_SECONDS)
def fetch_snapshot_body(source: Source, base_url: str, asset_limit: int) -> tuple[bytes, int, int]:
    """Raw `/assets` body (pages combined); retries and deadlines happen inside the client."""
    with source.client(base_url) as client:
        pages = client.fetch_asset_pages(asset_limit)
        return combine_pages(pages), client.stats.requests, client.stats.retries


@task(cache_policy=NO_CACHE, timeout_seconds=RATES_TASK_TIMEOUT_SECONDS)
def fetch_rates_body(source: Source, base_url: str) -> bytes:
    """Raw `/rates` body, one request, within its own short deadline."""
    with source.client(base_url) as client:
        return client.fetch_rates(RATES_FETCH_DEADLINE_SECONDS)


@lake_step
def quarantine_body(
    lake: Lake, source: str, raw: bytes, reason: str, base_url: str, kind: str = "assets"
) -> str:
    return lake.quarantine(
        source, raw, reason, kind=kind, context={"endpoint": f"{base_url}/{kind}"}
    )


@lake_step
def write_rates_to_lake(lake: Lake, source: str, timestamp_ms: int, raw: bytes) -> LakeWrite:
    return lake.write_rates(source, timestamp_ms, raw)


def extract_rates(source: Source, lake: Lake, base_url: str) -> tuple[str | None, str | None]:
    """The tick's `/rates` into the lake: (its lake path, None), or (None, why not) with the
    body, or the error, kept in quarantine. Never raises for the API's sake."""
    logger = get_run_logger()
    try:
        raw = fetch_rates_body(source, base_url)
    except (CoinCapError, TimeoutError) as exc:  # the client's own messages: they hold no key
        reason = f"`/rates` could not be fetched: {exc or 'no answer in time'}"
        where = quarantine_body(lake, source.name, b"", reason, base_url, kind="rates")
        logger.warning("%s (noted at %s); prices in fiat wait for the next tick", reason, where)
        return None, reason
    try:
        rates = parse_rates(raw)
        now = datetime.now(tz=UTC)
        if not now - LIVE_MAX_AGE <= rates.taken_at <= now + LIVE_CLOCK_SKEW:
            raise InvalidSnapshot(
                f"`timestamp` {rates.taken_at.isoformat()} is not about now "
                f"({now:%Y-%m-%dT%H:%M:%S}Z): a stale or future answer"
            )
    except InvalidSnapshot as exc:
        where = quarantine_body(lake, source.name, raw, exc.reason, base_url, kind="rates")
        logger.warning("Rates rejected: %s. Body kept at %s/%s", exc.reason, lake.url, where)
        return None, exc.reason
    written = write_rates_to_lake(lake, source.name, rates.timestamp_ms, raw)
    logger.info("%d rates at %s -> %s", len(rates.rates), rates.taken_at.isoformat(), written.path)
    return written.path, None


@lake_step
def write_snapshot_to_lake(lake: Lake, source: str, timestamp_ms: int, raw: bytes) -> LakeWrite:
    return lake.write_snapshot(source, timestamp_ms, raw)


def extract_snapshot(source: Source, lake: Lake, asset_limit: int | None) -> ExtractResult:
    """Fetch one snapshot into the lake; a bad body goes to quarantine and raises.
    Runs inside any flow (the `extract` flow here, and `pipeline`)."""
    logger = get_run_logger()
    limit = asset_limit or source.settings.asset_limit
    source.check_fits(lake)
    if source.fell_back:
        logger.warning(
            "No CoinCap API key is set: replaying bundled 2021 data instead of live data."
        )

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with source.endpoint(lake) as base_url:
        raw, requests, retries = fetch_snapshot_body(source, base_url, limit)
    seconds["fetch"] = time.perf_counter() - started
    result = _keep_snapshot(source, lake, base_url, raw, limit, (requests, retries), seconds)
    if not source.live or not source.settings.fetch_rates:  # the replay has no rates
        return result
    started = time.perf_counter()
    rates_path, rates_note = extract_rates(source, lake, base_url)
    seconds["rates"] = time.perf_counter() - started
    return dataclasses.replace(result, rates_path=rates_path, rates_note=rates_note)


def _keep_snapshot(
    source: Source,
    lake: Lake,
    base_url: str,
    raw: bytes,
    limit: int,
    calls: tuple[int, int],
    seconds: dict[str, float],
) -> ExtractResult:
    """Validate the `/assets` body and write it to the lake, or quarantine it and raise."""
    logger = get_run_logger()
    requests, retries = calls
    started = time.perf_counter()
    try:
        snapshot = parse_snapshot(raw, max_assets=limit)
        source.check_age(snapshot, datetime.now(tz=UTC))
    except InvalidSnapshot as exc:
        where = quarantine_body(lake, source.name, raw, exc.reason, base_url)
        logger.error("Snapshot rejected: %s. Body kept at %s/%s", exc.reason, lake.url, where)
        raise SnapshotRejected(f"{exc.reason} (kept in {where})") from None

    seconds["validate"] = time.perf_counter() - started
    started = time.perf_counter()
    written = write_snapshot_to_lake(lake, source.name, snapshot.timestamp_ms, raw)
    seconds["lake_write"] = time.perf_counter() - started
    logger.info(
        "%s: %d assets at %s -> %s (%s)",
        source.label,
        len(snapshot.assets),
        snapshot.taken_at.isoformat(),
        written.path,
        "new file" if written.created else "already in the lake, nothing new",
    )
    if snapshot.skipped:
        logger.info(
            "%d asset(s) without a usable price (dust printed as 0): %s",
            len(snapshot.skipped),
            "; ".join(snapshot.skipped[:10]),
        )
    if snapshot.rejected:
        logger.warning(
            "%d asset(s) left out by validation (the loader records each): %s",
            len(snapshot.rejected),
            "; ".join(snapshot.rejected[:10]),
        )
    return ExtractResult(
        source=source.name,
        lake_path=written.path,
        created=written.created,
        snapshot_at=snapshot.taken_at.isoformat(),
        asset_count=len(snapshot.assets),
        requests=requests,
        retries=retries,
        seconds=seconds,
    )


@flow(name="extract", log_prints=False, timeout_seconds=EXTRACT_TIMEOUT_SECONDS)
def extract(asset_limit: int | None = None) -> ExtractResult:
    """Fetch one snapshot into the lake; a bad body goes to quarantine and fails the run."""
    settings = get_settings()
    with exclusive_run(settings.lake_lock_path, timeout_seconds=settings.lock_timeout_seconds):
        return extract_snapshot(
            resolve_source(settings), resolve_target(settings).lake, asset_limit
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="Fetch one CoinCap snapshot into the lake.")
    parser.add_argument(
        "--asset-limit", type=int, default=None, help="assets to fetch (default: settings)"
    )
    args = parser.parse_args()
    finish(
        extract(asset_limit=args.asset_limit, return_state=True),
        lambda r: (
            f"Snapshot {r.snapshot_at} ({r.source}): {r.asset_count:,} assets in "
            f"{r.lake_path} ({'new' if r.created else 'already in the lake'})."
        ),
    )


if __name__ == "__main__":
    main()
