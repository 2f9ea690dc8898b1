"""The data source, decided once: `resolve_source(settings)` says whether this run reads live
CoinCap or the replay of 2021 data, and carries everything that follows from it (where to
fetch, the key, the rate limit, the age rule, the label), so no flow asks again.

Live CoinCap needs an API key, from the environment or (cloud) the Secret block
`python -m blocks.register` saved; without one the pipeline replays bundled 2021 data rather
than fail every tick, and says so. Live and replayed data never share a lake.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from pydantic import SecretStr

from flows.adapters.coincap import CoinCapClient
from flows.adapters.lake import Lake
from flows.core.settings import COINCAP_API_KEY_BLOCK, Settings, SourceName
from flows.core.snapshot import Snapshot, check_live_time
from flows.replay.server import serve_replay

DAY_MS = 86_400_000
REPLAY_YEAR = (1609459200000, 1640995200000)  # 2021-01-01 .. 2022-01-01 UTC
UNTHROTTLED = 10**6  # requests per minute: the replay server on 127.0.0.1 has no limits


class WrongSourceForLake(RuntimeError):
    """Live and replayed data never share a lake: one would pass for the other."""


@dataclass(frozen=True)
class Source:
    """Where snapshots come from in this run, and the rules that go with it."""

    name: SourceName  # what lake paths and rows are labelled with
    settings: Settings = field(repr=False)  # the client's bounds, and the key (a secret)
    fell_back: bool = False  # live CoinCap was asked for, but there is no key

    @property
    def live(self) -> bool:
        return self.name == "coincap"

    @property
    def label(self) -> str:
        return "live CoinCap" if self.live else "REPLAY of 2021 data"

    @property
    def requests_per_minute(self) -> float:
        """CoinCap's limits are CoinCap's; the replay server is not throttled."""
        return self.settings.backfill_requests_per_minute if self.live else UNTHROTTLED

    def history_window(self, now_ms: int) -> tuple[int, int]:
        """What a backfill fetches by default: the last year live, 2021 on the replay."""
        return (now_ms - 365 * DAY_MS, now_ms) if self.live else REPLAY_YEAR

    def snapshots_this_tick(self, lake: Lake) -> int:
        """Live: one, the market now. The replay's first tick on an empty lake: the seed's
        days at once (a full dashboard from the first tick), then one day per tick."""
        if self.live or lake.latest_timestamp("replay") is not None:
            return 1
        return self.settings.replay_seed_days

    def check_age(self, snapshot: Snapshot, now: datetime) -> None:
        """A live snapshot must be recent (the replay is 2021 by design)."""
        if self.live:
            check_live_time(snapshot, now)

    def check_fits(self, lake: Lake) -> None:
        """Refuse before fetching anything: a tick without its key on a lake of live data
        would replay 2021 into it, and a live tick on the demo's lake would mix live in."""
        if not self.live and lake.latest_timestamp("coincap") is not None:
            raise WrongSourceForLake(
                f"this lake ({lake.url}) holds live CoinCap data, "
                + (
                    "but CRYPTOLYTICS_COINCAP_API_KEY is not set (in the environment or the "
                    f"`{COINCAP_API_KEY_BLOCK}` Secret block): "
                    if self.fell_back
                    else "and CRYPTOLYTICS_SOURCE=replay: "
                )
                + "not replaying 2021 data into it. Set the key, or point "
                "CRYPTOLYTICS_LAKE_URL and CRYPTOLYTICS_DUCKDB_PATH at a lake and warehouse of "
                "their own for the demo."
            )
        if self.live and lake.latest_timestamp("replay") is not None:
            raise WrongSourceForLake(
                f"this lake ({lake.url}) holds the replay of 2021 data: live CoinCap data needs "
                "a lake and warehouse of its own (set CRYPTOLYTICS_LAKE_URL and "
                "CRYPTOLYTICS_DUCKDB_PATH, or `make clean` to drop the demo)."
            )

    @contextmanager
    def endpoint(self, lake: Lake) -> Iterator[str]:
        """The base URL: live CoinCap, or the replay server on 127.0.0.1 continuing after
        the newest replay day already in the lake."""
        if self.live:
            yield self.settings.coincap_base_url
        else:
            with serve_replay(lake.latest_timestamp("replay")) as url:
                yield url

    def client(self, base_url: str) -> CoinCapClient:
        """The one way a CoinCap client is made: every bound from settings, the key only
        for the live API."""
        settings = self.settings
        return CoinCapClient(
            base_url,
            settings.api_key if self.live else None,
            timeout=settings.http_timeout_seconds,
            max_attempts=settings.http_max_attempts,
            backoff_seconds=settings.http_backoff_seconds,
            request_deadline_seconds=settings.http_request_deadline_seconds,
            fetch_deadline_seconds=settings.fetch_deadline_seconds,
            max_compressed_bytes=settings.http_max_response_bytes,
            max_body_bytes=settings.http_max_body_bytes,
        )


def with_block_secrets(settings: Settings) -> Settings:
    """On the cloud target, a CoinCap key missing from the environment comes from the Secret
    block, so workers need no key of their own."""
    if settings.target != "cloud" or settings.coincap_api_key is not None:
        return settings
    from prefect.blocks.system import Secret

    try:
        key = cast(Secret[str], Secret.load(COINCAP_API_KEY_BLOCK)).get()
    except ValueError:  # no such block: replay, as without a key anywhere
        return settings
    if not key:
        return settings
    return settings.model_copy(update={"coincap_api_key": SecretStr(str(key))})


def resolve_source(settings: Settings) -> Source:
    settings = with_block_secrets(settings)
    if settings.source == "coincap" and settings.coincap_api_key is None:
        return Source("replay", settings, fell_back=True)
    return Source(settings.source, settings)
