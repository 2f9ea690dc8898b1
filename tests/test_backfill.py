"""Backfill: windows, politeness, resuming from the lake, and one series with snapshots."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import duckdb
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flows.adapters.lake import Lake
from flows.backfill import DAY_MS, RateLimiter, backfill, history_windows, parse_day
from flows.core.settings import Settings
from tests.conftest import FIXTURES

pytestmark = pytest.mark.unit

HOUR_MS = 3_600_000
RECORDED_HISTORY = FIXTURES / "coincap" / "v2_bitcoin_history_h1_2023-03-03.json"


def test_windows_follow_a_fixed_grid_clipped_to_the_range() -> None:
    start, end = parse_day("2025-01-01"), parse_day("2025-03-01")
    windows = history_windows(start, end, "h1")
    assert windows[0][0] == start and windows[-1][1] == end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows))  # no gap, no overlap
    assert all(e - s <= 30 * DAY_MS for s, e in windows)
    inner = windows[1:-1]
    assert all(s % (30 * DAY_MS) == 0 for s, _ in inner)  # the same cells whatever the range
    assert history_windows(start, start + DAY_MS, "m5") == [(start, start + DAY_MS)]
    assert len(history_windows(start, start + 3 * DAY_MS, "m5")) == 3
    with pytest.raises(ValueError, match="start must be before end"):
        history_windows(end, start, "d1")


class FakeClock:
    """Time that moves only when someone sleeps: the limiter's arithmetic, not the machine's."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_rate_limiter_spaces_requests() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=120, clock=clock, sleep=clock.sleep)  # one every 0.5 s
    waits = [limiter.acquire() for _ in range(4)]
    assert waits == [0.0, 0.5, 0.5, 0.5]
    clock.now += 10  # a quiet spell earns no burst beyond the next slot
    assert limiter.acquire() == 0.0
    assert limiter.acquire() == 0.5


def history_body(start_ms: int, end_ms: int, step_ms: int) -> bytes:
    data = [
        {
            "priceUsd": f"{100 + (t - start_ms) / step_ms:.16f}",
            "time": t,
            "circulatingSupply": "1000.0000000000000000",
            "date": "ignored",
        }
        for t in range(start_ms, end_ms, step_ms)
    ]
    return json.dumps({"data": data, "timestamp": end_ms}).encode()


@pytest.fixture
def live(settings: Settings, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> HTTPServer:
    monkeypatch.setenv("CRYPTOLYTICS_SOURCE", "coincap")
    monkeypatch.setenv("CRYPTOLYTICS_COINCAP_API_KEY", "test-key")
    monkeypatch.setenv("CRYPTOLYTICS_COINCAP_BASE_URL", httpserver.url_for("/v3"))
    monkeypatch.setenv("CRYPTOLYTICS_HTTP_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("CRYPTOLYTICS_BACKFILL_REQUESTS_PER_MINUTE", "6000")
    return httpserver


def history_requests(server: HTTPServer) -> list[tuple[str, str]]:
    return [(r.path, r.args["start"]) for r, _ in server.log if r.path.endswith("/history")]


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_an_interrupted_backfill_resumes_without_refetching(
    live: HTTPServer, settings: Settings
) -> None:
    served = []

    def answer(request: Request) -> Response:
        if len(served) >= 3 and not getattr(answer, "healthy", False):
            return Response("upstream down", status=500)
        served.append(request.args["start"])
        start, end = int(request.args["start"]), int(request.args["end"])
        return Response(history_body(start, end, HOUR_MS), content_type="application/json")

    live.expect_request("/v3/assets/bitcoin/history").respond_with_handler(answer)
    args = {"coins": ["bitcoin"], "interval": "h1", "start": "2025-01-01", "end": "2025-07-01"}
    windows = len(history_windows(parse_day("2025-01-01"), parse_day("2025-07-01"), "h1"))

    with pytest.raises(RuntimeError, match="window"):
        backfill(**args)  # dies after three windows
    assert len(Lake(settings.lake_url).list_history()) == 3

    answer.healthy = True
    live.clear_log()
    result = backfill(**args)
    assert result.windows_already_in_lake == 3
    assert len(history_requests(live)) == windows - 3  # finished windows were not asked again
    hours = (parse_day("2025-07-01") - parse_day("2025-01-01")) // HOUR_MS
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        assert con.execute("select count(*) from raw.coincap_history").fetchall() == [(hours,)]
        assert con.execute(
            "select count(*), count(distinct bucket_at) from prod.mart_coin_hourly"
        ).fetchall() == [(hours, hours)]


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_429_is_waited_out_and_the_recorded_body_loads(
    live: HTTPServer, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRYPTOLYTICS_HTTP_MAX_ATTEMPTS", "3")
    recorded = RECORDED_HISTORY.read_bytes()
    live.expect_ordered_request("/v3/assets/bitcoin/history").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "1"}
    )
    live.expect_ordered_request("/v3/assets/bitcoin/history").respond_with_data(recorded)
    # one h1 window on the 30-day grid; the real body is kept as sent, and its points inside
    # the window asked for are loaded (it reaches past the window's end: those are skipped)
    start, end = parse_day("2023-01-23"), parse_day("2023-02-22")
    backfill(coins=["bitcoin"], interval="h1", start="2023-01-23", end="2023-02-22")
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        rows = con.execute(
            "select count(*), min(point_at), max(point_at) from raw.coincap_history"
        ).fetchall()
    inside = [p for p in json.loads(recorded)["data"] if start <= p["time"] < end]
    assert rows[0][0] == len(inside) == 489
    # the 429, then the same window again once Retry-After had passed
    assert history_requests(live) == [("/v3/assets/bitcoin/history", "1674432000000")] * 2


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_replay_backfill_gives_a_year_of_daily_history_next_to_snapshots(
    settings: Settings,
) -> None:
    from flows.pipeline import pipeline

    pipeline()  # one snapshot: 2021-01-01
    result = backfill(coins=["bitcoin", "ethereum"], interval="d1")
    assert result.failures == {}
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        days = con.execute(
            "select coin_id, count(*), count(distinct bucket_at), min(origin), max(origin) "
            "from prod.mart_coin_daily where coin_id in ('bitcoin', 'ethereum') "
            "group by 1 order by 1"
        ).fetchall()
        first_day = con.execute(
            "select d.close_price_usd, f.price_usd from prod.mart_coin_daily d "
            "join prod.facts_coins f on f.coin_id = d.coin_id and f.snapshot_at = d.bucket_at "
            "where d.coin_id = 'bitcoin'"
        ).fetchall()
    # 365 days each, one row per day: 2021-01-01 from the snapshot, the rest from history
    assert days == [
        ("bitcoin", 365, 365, "history", "snapshot"),
        ("ethereum", 365, 365, "history", "snapshot"),
    ]
    assert first_day[0][0] == pytest.approx(first_day[0][1])


def test_coin_ids_cannot_escape_the_lake(tmp_path: Path) -> None:
    from flows.core.lake_layout import HistoryKey, history_path

    with pytest.raises(ValueError, match="unusable coin id"):
        history_path(HistoryKey("coincap", "d1", "../../etc", 0, 1))
    assert "/coin=%5Bold%5D/" in history_path(HistoryKey("coincap", "d1", "[old]", 0, 1))


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_server")
def test_a_server_that_ignores_start_and_end_fails_the_window_instead_of_marking_it_done(
    live: HTTPServer, settings: Settings
) -> None:
    """The recorded body (February 2023) for every window of January 2025: none of its
    points is in the window, so the window is quarantined with why, reported, and fetched
    again by the next run; it is never recorded as done with nothing in it."""
    live.expect_request("/v3/assets/bitcoin/history").respond_with_data(
        RECORDED_HISTORY.read_bytes()
    )
    args = {"coins": ["bitcoin"], "interval": "d1", "start": "2025-01-01", "end": "2025-02-01"}
    state = backfill(**args, return_state=True)
    assert state.is_failed() and "window(s) failed" in str(state.message)
    lake = Lake(settings.lake_url)
    assert lake.list_history() == []  # not done: the next backfill asks again
    notes = [note for _, note in lake.quarantine_notes()]
    assert len(notes) == 1 and "ignored `start`/`end`" in str(notes[0]["reason"])
    assert "interval=d1/coin=bitcoin/" in str(notes[0]["window"])
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        recorded = con.execute("select stage, reason from ops.dead_letters").fetchall()
    assert len(recorded) == 1 and recorded[0][0] == "backfill"  # on the health page
    assert "ignored `start`/`end`" in recorded[0][1]
    live.clear_log()
    backfill(**args, return_state=True)
    assert len(history_requests(live)) == 1  # asked again, not skipped as done
