"""extract: CoinCap `/assets` -> validated -> raw lake file (or quarantine, and fail).

python -m flows.extract [--asset-limit N]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.cli import finish
from flows.coincap import CoinCapClient, combine_pages
from flows.lake import Lake, LakeWrite
from flows.locking import exclusive_run
from flows.replay.server import serve_replay
from flows.settings import (
    EXTRACT_TIMEOUT_SECONDS,
    FETCH_TASK_TIMEOUT_SECONDS,
    Settings,
    get_settings,
)
from flows.snapshot import InvalidSnapshot, check_live_time, parse_snapshot
from flows.steps import lake_step
from flows.targets import resolve_target, with_block_secrets


class SnapshotRejected(RuntimeError):
    """The API answered, but with a body we will not load; it is kept in quarantine."""


class WrongSourceForLake(RuntimeError):
    """Live and replayed data never share a lake: one would pass for the other."""


def check_source_fits_lake(settings: Settings, lake: Lake) -> None:
    """Refuse before fetching anything: a tick without its key on a lake of live data would
    replay 2021 into it, and a live tick on the demo's lake would mix live into 2021."""
    source = settings.effective_source
    if source == "replay" and lake.latest_timestamp("coincap") is not None:
        missing_key = settings.source == "coincap"
        raise WrongSourceForLake(
            f"this lake ({lake.url}) holds live CoinCap data, "
            + (
                "but CRYPTOLYTICS_COINCAP_API_KEY is not set (in the environment or the "
                "`cryptolytics-coincap-api-key` Secret block): "
                if missing_key
                else "and CRYPTOLYTICS_SOURCE=replay: "
            )
            + "not replaying 2021 data into it. Set the key, or point CRYPTOLYTICS_LAKE_URL "
            "and CRYPTOLYTICS_DUCKDB_PATH at a lake and warehouse of their own for the demo."
        )
    if source == "coincap" and lake.latest_timestamp("replay") is not None:
        raise WrongSourceForLake(
            f"this lake ({lake.url}) holds the replay of 2021 data: live CoinCap data needs a "
            "lake and warehouse of its own (set CRYPTOLYTICS_LAKE_URL and "
            "CRYPTOLYTICS_DUCKDB_PATH, or `make clean` to drop the demo)."
        )


def coincap_client(settings: Settings, base_url: str) -> CoinCapClient:
    """The client with every bound from settings; the key only for the live API."""
    return CoinCapClient(
        base_url,
        settings.api_key if settings.effective_source == "coincap" else None,
        timeout=settings.http_timeout_seconds,
        max_attempts=settings.http_max_attempts,
        backoff_seconds=settings.http_backoff_seconds,
        request_deadline_seconds=settings.http_request_deadline_seconds,
        fetch_deadline_seconds=settings.fetch_deadline_seconds,
        max_compressed_bytes=settings.http_max_response_bytes,
        max_body_bytes=settings.http_max_body_bytes,
    )


@dataclass(frozen=True)
class ExtractResult:
    source: str
    lake_path: str
    created: bool
    snapshot_at: str
    asset_count: int
    requests: int
    retries: int
    seconds: dict[str, float]  # fetch, validate, lake_write


@contextmanager
def coincap_endpoint(settings: Settings, lake: Lake) -> Iterator[str]:
    """The base URL to fetch from: live CoinCap, or the replay server on 127.0.0.1
    continuing after the newest replay day already in the lake."""
    if settings.effective_source == "replay":
        with serve_replay(lake.latest_timestamp("replay")) as url:
            yield url
    else:
        yield settings.coincap_base_url


@task(cache_policy=NO_CACHE, timeout_seconds=FETCH_TASK_TIMEOUT_SECONDS)
def fetch_snapshot_body(
    settings: Settings, base_url: str, asset_limit: int
) -> tuple[bytes, int, int]:
    """Raw `/assets` body (pages combined); retries and deadlines happen inside the client."""
    with coincap_client(settings, base_url) as client:
        pages = client.fetch_asset_pages(asset_limit)
        return combine_pages(pages), client.stats.requests, client.stats.retries


@lake_step
def quarantine_body(lake: Lake, source: str, raw: bytes, reason: str, base_url: str) -> str:
    return lake.quarantine(source, raw, reason, context={"endpoint": f"{base_url}/assets"})


@lake_step
def write_snapshot_to_lake(lake: Lake, source: str, timestamp_ms: int, raw: bytes) -> LakeWrite:
    return lake.write_snapshot(source, timestamp_ms, raw)


def extract_snapshot(settings: Settings, lake: Lake, asset_limit: int | None) -> ExtractResult:
    """Fetch one snapshot into the lake; a bad body goes to quarantine and raises.
    Runs inside any flow (the `extract` flow here, and `pipeline`)."""
    logger = get_run_logger()
    source = settings.effective_source
    limit = asset_limit or settings.asset_limit
    check_source_fits_lake(settings, lake)
    if settings.source == "coincap" and source == "replay":
        logger.warning(
            "No CoinCap API key is set: replaying bundled 2021 data instead of live data."
        )

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with coincap_endpoint(settings, lake) as base_url:
        raw, requests, retries = fetch_snapshot_body(settings, base_url, limit)
    seconds["fetch"] = time.perf_counter() - started
    started = time.perf_counter()
    try:
        snapshot = parse_snapshot(raw, max_assets=limit)
        if source == "coincap":
            check_live_time(snapshot, datetime.now(tz=UTC))
    except InvalidSnapshot as exc:
        where = quarantine_body(lake, source, raw, exc.reason, base_url)
        logger.error("Snapshot rejected: %s. Body kept at %s/%s", exc.reason, lake.url, where)
        raise SnapshotRejected(f"{exc.reason} (kept in {where})") from None

    seconds["validate"] = time.perf_counter() - started
    started = time.perf_counter()
    written = write_snapshot_to_lake(lake, source, snapshot.timestamp_ms, raw)
    seconds["lake_write"] = time.perf_counter() - started
    label = "REPLAY of 2021 data" if source == "replay" else "live CoinCap"
    logger.info(
        "%s: %d assets at %s -> %s (%s)",
        label,
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
        source=source,
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
    settings = with_block_secrets(get_settings())
    with exclusive_run(settings.lake_lock_path, timeout_seconds=settings.lock_timeout_seconds):
        return extract_snapshot(settings, resolve_target(settings).lake, asset_limit)


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
