"""The CoinCap client against a real HTTP server on 127.0.0.1 serving recorded bodies."""

from __future__ import annotations

import json
import re
import time

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flows.adapters.coincap import (
    CoinCapAuthError,
    CoinCapClient,
    CoinCapError,
    CoinCapShutdownError,
    CoinCapUnavailable,
    combine_pages,
)
from flows.core.snapshot import parse_snapshot

pytestmark = pytest.mark.unit

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


# Every wait is bounded, and the key never leaves the client.


def test_a_server_that_trickles_bytes_is_cut_off_at_the_request_deadline(
    httpserver: HTTPServer,
) -> None:
    """httpx's timeout is per read: 1 byte every 0.2 s would never trip it."""

    def trickle(request: Request) -> Response:
        def chunks() -> object:
            for _ in range(100):  # 20 s of trickling if nobody stops it
                yield b" "
                time.sleep(0.2)

        return Response(chunks(), direct_passthrough=True)

    httpserver.expect_request("/v3/assets").respond_with_handler(trickle)
    started = time.monotonic()
    with (
        client_for(httpserver, Sleeps(), max_attempts=2, request_deadline_seconds=1.0) as client,
        pytest.raises(CoinCapUnavailable, match=r"not complete after 1s \(the request's deadline"),
    ):
        client.fetch_asset_pages(100)
    assert time.monotonic() - started < 10  # two attempts of 1 s, not 2 x 20 s
    assert len(httpserver.log) == 2


def test_retry_after_longer_than_the_fetch_deadline_ends_the_fetch_at_once(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/v3/assets").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "3600"}
    )
    sleeps = Sleeps()
    with (
        client_for(httpserver, sleeps, fetch_deadline_seconds=60) as client,
        pytest.raises(CoinCapUnavailable, match=r"waiting 3600s .* would pass the fetch deadline"),
    ):
        client.fetch_asset_pages(100)
    assert sleeps == []  # no hour-long wait holding the tick and the lock


def test_a_gzip_bomb_stops_at_the_body_cap(httpserver: HTTPServer) -> None:
    import gzip

    bomb = gzip.compress(b" " * (200 * 2**20))  # 200 MB of JSON whitespace, ~200 KB sent
    httpserver.expect_request("/v3/assets").respond_with_data(
        bomb, headers={"Content-Encoding": "gzip"}, content_type="application/json"
    )
    with (
        client_for(httpserver, Sleeps(), max_attempts=1, max_body_bytes=16 * 2**20) as client,
        pytest.raises(CoinCapUnavailable, match="inflates to more than 16,777,216 bytes"),
    ):
        client.fetch_asset_pages(100)


def test_an_answer_larger_than_the_cap_is_not_read_to_the_end(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v3/assets").respond_with_data(b"x" * (3 * 2**20))
    with (
        client_for(httpserver, Sleeps(), max_attempts=1, max_compressed_bytes=2**20) as client,
        pytest.raises(CoinCapUnavailable, match="larger than 1,048,576 bytes"),
    ):
        client.fetch_asset_pages(100)


@pytest.mark.parametrize(
    ("encoding", "body", "reason"),
    [
        ("gzip", b'{"data": []}', "says gzip but is not"),
        ("br", b"\x00\x01", "an encoding we did not ask for ('br')"),
    ],
)
def test_a_body_that_lies_about_its_encoding_is_a_clear_error_without_the_key(
    httpserver: HTTPServer, encoding: str, body: bytes, reason: str
) -> None:
    """httpx's own DecodingError carries the request, headers and key included, into
    whatever pickles it (Prefect's result storage): ours carries a sentence."""
    import pickle

    httpserver.expect_request("/v3/assets").respond_with_data(
        body, headers={"Content-Encoding": encoding}
    )
    with (
        client_for(httpserver, Sleeps(), max_attempts=2) as client,
        pytest.raises(CoinCapUnavailable, match=re.escape(reason)) as caught,
    ):
        client.fetch_asset_pages(100)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__ is False
    assert b"test-key" not in pickle.dumps(caught.value)


def test_upstream_text_echoing_the_key_is_redacted(
    httpserver: HTTPServer, recorded_assets: bytes
) -> None:
    def echo(request: Request) -> Response:
        headers = json.dumps(dict(request.headers))
        if request.args["limit"] == "1":
            return Response(f"bad request, you sent {headers}", status=400)
        body = json.loads(recorded_assets)
        body["data"][0]["name"] = f"debug proxy saw {request.headers['Authorization']}"
        return Response(json.dumps(body))

    httpserver.expect_request("/v3/assets").respond_with_handler(echo)
    with client_for(httpserver, Sleeps()) as client:
        (page,) = client.fetch_asset_pages(100)
        with pytest.raises(CoinCapError) as caught:
            client.fetch_asset_pages(1)
    assert b"test-key" not in page and b"debug proxy saw Bearer [redacted]" in page
    assert "test-key" not in str(caught.value) and "Authorization" in str(caught.value)
