"""The CoinCap client against a real HTTP server on 127.0.0.1 serving recorded bodies."""

from __future__ import annotations

import json
import time

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flows.coincap import (
    CoinCapAuthError,
    CoinCapClient,
    CoinCapShutdownError,
    CoinCapUnavailable,
    combine_pages,
)
from flows.snapshot import parse_snapshot

V2_SHUTDOWN = json.dumps(
    {"data": {"message": "We have deprecated the v2 API. Please use the v3 API at pro.coincap.io"}}
)


class Sleeps(list[float]):
    """Records the client's waits instead of spending them (the waits are what we test)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_for(server: HTTPServer, sleeps: Sleeps, **kwargs: object) -> CoinCapClient:
    options = {"max_attempts": 4, "backoff_seconds": 0.5, "timeout": 2.0, **kwargs}
    return CoinCapClient(server.url_for("/v3"), "test-key", sleep=sleeps, **options)


def test_fetches_recorded_body_with_bearer_key(
    httpserver: HTTPServer, recorded_assets: bytes
) -> None:
    httpserver.expect_oneshot_request(
        "/v3/assets",
        query_string={"limit": "2000", "offset": "0"},
        headers={"Authorization": "Bearer test-key"},
    ).respond_with_data(recorded_assets, content_type="application/json")
    with client_for(httpserver, Sleeps()) as client:
        pages = client.fetch_asset_pages(2000)
    assert pages == [recorded_assets]  # raw bytes kept as sent
    assert client.stats.requests == 1


def test_pages_with_limit_and_offset_beyond_2000(httpserver: HTTPServer) -> None:
    def page(request: Request) -> Response:
        limit, offset = int(request.args["limit"]), int(request.args["offset"])
        count = min(limit, 2300 - offset)  # the API has 2,300 assets
        data = [
            {"id": f"c{offset + i}", "rank": str(offset + i + 1), "priceUsd": "1"}
            for i in range(count)
        ]
        return Response(json.dumps({"data": data, "timestamp": 1700000000000 + offset}))

    httpserver.expect_request("/v3/assets").respond_with_handler(page)
    with client_for(httpserver, Sleeps()) as client:
        pages = client.fetch_asset_pages(2500)
    queries = [(r.args["limit"], r.args["offset"]) for r, _ in httpserver.log]
    assert queries == [("2000", "0"), ("500", "2000")]
    snapshot = parse_snapshot(combine_pages(pages), max_assets=2500)
    assert len(snapshot.assets) == 2300
    assert snapshot.timestamp_ms == 1700000000000  # the first page's time names the snapshot


def test_429_honours_retry_after(httpserver: HTTPServer, recorded_assets: bytes) -> None:
    httpserver.expect_ordered_request("/v3/assets").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "7"}
    )
    httpserver.expect_ordered_request("/v3/assets").respond_with_data(recorded_assets)
    sleeps = Sleeps()
    with client_for(httpserver, sleeps) as client:
        assert client.fetch_asset_pages(100) == [recorded_assets]
    assert sleeps == [7.0]
    assert client.stats.retries == 1


def test_500_then_success_backs_off_with_jitter(
    httpserver: HTTPServer, recorded_assets: bytes
) -> None:
    for _ in range(2):
        httpserver.expect_ordered_request("/v3/assets").respond_with_data("oops", status=500)
    httpserver.expect_ordered_request("/v3/assets").respond_with_data(recorded_assets)
    sleeps = Sleeps()
    with client_for(httpserver, sleeps) as client:
        assert client.fetch_asset_pages(100) == [recorded_assets]
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0  # full jitter under 0.5 * 2^n


def test_timeout_is_retried(httpserver: HTTPServer, recorded_assets: bytes) -> None:
    calls = []

    def slow_first_time(request: Request) -> Response:
        calls.append(request)
        if len(calls) == 1:
            time.sleep(0.4)  # longer than the client waits
        return Response(recorded_assets)

    httpserver.expect_request("/v3/assets").respond_with_handler(slow_first_time)
    sleeps = Sleeps()
    with client_for(httpserver, sleeps, timeout=0.3) as client:
        assert client.fetch_asset_pages(100) == [recorded_assets]
    assert client.stats.retries == 1


def test_connection_refused_gives_up_with_a_clear_error() -> None:
    sleeps = Sleeps()
    client = CoinCapClient("http://127.0.0.1:9/v3", None, max_attempts=3, sleep=sleeps)
    with pytest.raises(CoinCapUnavailable, match=r"failed 3 times, last: ConnectError"):
        client.fetch_asset_pages(10)
    assert len(sleeps) == 2


@pytest.mark.parametrize("status", [401, 403])
def test_bad_key_is_not_retried_and_says_what_to_do(httpserver: HTTPServer, status: int) -> None:
    httpserver.expect_request("/v3/assets").respond_with_data("Unauthorized", status=status)
    with client_for(httpserver, Sleeps()) as client, pytest.raises(CoinCapAuthError) as caught:
        client.fetch_asset_pages(100)
    assert "CRYPTOLYTICS_COINCAP_API_KEY" in str(caught.value)
    assert len(httpserver.log) == 1


@pytest.mark.parametrize("status", [200, 429])
def test_v2_shutdown_body_is_recognised_not_retried(httpserver: HTTPServer, status: int) -> None:
    httpserver.expect_request("/v3/assets").respond_with_data(
        V2_SHUTDOWN, status=status, content_type="application/json"
    )
    with client_for(httpserver, Sleeps()) as client:
        if status == 200:
            # a 200 shutdown body is returned raw; validation rejects it (see test_snapshot)
            assert client.fetch_asset_pages(100) == [V2_SHUTDOWN.encode()]
        else:
            with pytest.raises(CoinCapShutdownError, match="v3"):
                client.fetch_asset_pages(100)
    assert len(httpserver.log) == 1


def test_keeps_failing_5xx_raises_unavailable(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v3/assets").respond_with_data("down", status=503)
    sleeps = Sleeps()
    with (
        client_for(httpserver, sleeps) as client,
        pytest.raises(CoinCapUnavailable, match="HTTP 503"),
    ):
        client.fetch_asset_pages(100)
    assert len(httpserver.log) == 4
    assert len(sleeps) == 3
