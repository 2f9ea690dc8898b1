"""The data source is decided once (`resolve_source`), and everything that follows from it
comes with it: the key only for live CoinCap, the rate limit, the age rule, the label."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pytest_httpserver import HTTPServer

from flows.adapters.lake import Lake
from flows.adapters.source import REPLAY_YEAR, Source, WrongSourceForLake, resolve_source
from flows.core.settings import Settings
from flows.core.snapshot import InvalidSnapshot, parse_snapshot
from tests.conftest import RECORDED_TIMESTAMP

pytestmark = pytest.mark.unit


def authorization_sent(source: Source, httpserver: HTTPServer, body: bytes) -> str | None:
    """What the source's client sends as `Authorization` to a real server on 127.0.0.1."""
    httpserver.expect_request("/v3/assets").respond_with_data(body)
    with source.client(httpserver.url_for("/v3")) as client:
        client.fetch_asset_pages(100)
    (request, _), *_ = httpserver.log
    httpserver.clear()
    return request.headers.get("Authorization")


def test_live_coincap_needs_a_key_and_without_one_the_run_replays_and_says_why(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    httpserver: HTTPServer,
    recorded_assets: bytes,
) -> None:
    monkeypatch.setenv("CRYPTOLYTICS_SOURCE", "coincap")
    source = resolve_source(Settings())
    assert (source.name, source.live, source.fell_back) == ("replay", False, True)
    assert source.label == "REPLAY of 2021 data"
    assert authorization_sent(source, httpserver, recorded_assets) is None
    assert source.history_window(1_700_000_000_000) == REPLAY_YEAR
    assert source.requests_per_minute > 10_000  # the replay server is not CoinCap

    monkeypatch.setenv("CRYPTOLYTICS_COINCAP_API_KEY", "sk-test")
    monkeypatch.setenv("CRYPTOLYTICS_BACKFILL_REQUESTS_PER_MINUTE", "120")
    live = resolve_source(Settings())
    assert (live.name, live.live, live.fell_back) == ("coincap", True, False)
    assert live.label == "live CoinCap"
    assert authorization_sent(live, httpserver, recorded_assets) == "Bearer sk-test"
    assert live.requests_per_minute == 120
    now_ms = 1_700_000_000_000
    assert live.history_window(now_ms) == (now_ms - 365 * 86_400_000, now_ms)
    assert "sk-test" not in repr(live)  # the settings (and the key) stay out of its repr


def test_asking_for_the_replay_replays_even_with_a_key(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    httpserver: HTTPServer,
    recorded_assets: bytes,
) -> None:
    monkeypatch.setenv("CRYPTOLYTICS_COINCAP_API_KEY", "sk-test")
    source = resolve_source(Settings())  # the fixture's source is replay
    assert (source.name, source.fell_back) == ("replay", False)
    assert authorization_sent(source, httpserver, recorded_assets) is None  # not to the replay


def test_only_a_live_snapshot_must_be_recent(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, recorded_assets: bytes
) -> None:
    snapshot = parse_snapshot(recorded_assets)
    long_after = datetime.fromtimestamp(RECORDED_TIMESTAMP / 1000 + 30 * 86_400, tz=UTC)
    resolve_source(Settings()).check_age(snapshot, long_after)  # the replay: 2021 by design
    monkeypatch.setenv("CRYPTOLYTICS_SOURCE", "coincap")
    monkeypatch.setenv("CRYPTOLYTICS_COINCAP_API_KEY", "sk-test")
    with pytest.raises(InvalidSnapshot, match="old"):
        resolve_source(Settings()).check_age(snapshot, long_after)


def test_live_and_replayed_data_never_share_a_lake(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, recorded_assets: bytes
) -> None:
    lake = Lake(settings.lake_url)
    lake.write_snapshot("coincap", RECORDED_TIMESTAMP, recorded_assets)
    with pytest.raises(WrongSourceForLake, match="holds live CoinCap data"):
        resolve_source(Settings()).check_fits(lake)
    monkeypatch.setenv("CRYPTOLYTICS_SOURCE", "coincap")
    monkeypatch.setenv("CRYPTOLYTICS_COINCAP_API_KEY", "sk-test")
    resolve_source(Settings()).check_fits(lake)  # live on a live lake: fine


def test_the_replays_first_tick_takes_the_seed_of_days_and_every_later_one_day(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, recorded_assets: bytes
) -> None:
    """A new user's first page has 24h and 7d changes at once; after that one day a tick,
    and live CoinCap is always one snapshot (the market now)."""
    monkeypatch.setenv("CRYPTOLYTICS_REPLAY_SEED_DAYS", "28")
    lake = Lake(settings.lake_url)
    replay = resolve_source(Settings())
    assert replay.snapshots_this_tick(lake) == 28
    lake.write_snapshot("replay", RECORDED_TIMESTAMP, recorded_assets)
    assert replay.snapshots_this_tick(lake) == 1
    live = resolve_source(Settings(source="coincap", coincap_api_key="k"))
    assert live.snapshots_this_tick(Lake(f"{settings.lake_url}-live")) == 1
