"""A CoinCap-compatible HTTP server on 127.0.0.1 that replays the bundled 2021 data.

With `source=replay` the pipeline fetches from this server through the very same client,
lake, loader and dbt code as live CoinCap. Each `/assets` request for the first page
(`offset=0`) moves on to the next replay day; later pages serve the same day. Bodies keep
the real 2021 timestamps, so replayed data can never pass for today's.

    python -m flows.replay.server --port 8765   # then CRYPTOLYTICS_COINCAP_BASE_URL=http://127.0.0.1:8765/v3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from flows.core.settings import COINCAP_MAX_PAGE
from flows.replay.dataset import ReplayDataset, shared_dataset

log = logging.getLogger(__name__)

API_PREFIX = "/v3"
HISTORY_PATH = re.compile(rf"{API_PREFIX}/assets/([^/]+)/history/?")


def _as_coincap_number(value: float | None) -> str | None:
    """CoinCap's style: a decimal string with 16 places."""
    return None if value is None else f"{value:.16f}"


def assets_body(day_ms: int, rows: list[dict[str, Any]]) -> bytes:
    data = [
        {
            "id": row["id"],
            "rank": str(row["rank"]),
            "symbol": row["symbol"],
            "name": row["name"],
            "supply": _as_coincap_number(row["supply"]),
            "maxSupply": None,
            "marketCapUsd": _as_coincap_number(row["market_cap_usd"]),
            "volumeUsd24Hr": _as_coincap_number(row["volume_usd_24hr"]),
            "priceUsd": _as_coincap_number(row["price_usd"]),
            "changePercent24Hr": _as_coincap_number(row["change_percent_24hr"]),
            "vwap24Hr": None,
            "explorer": None,
        }
        for row in rows
    ]
    return json.dumps({"data": data, "timestamp": day_ms}, separators=(",", ":")).encode()


class ReplayState:
    """Which replay day is being served; shared by the server's threads."""

    def __init__(self, dataset: ReplayDataset, start_after_ms: int | None) -> None:
        self.dataset = dataset
        self._last_served = start_after_ms
        self._current: int | None = None
        self.lock = threading.Lock()
        self.requests = 0

    def day_for(self, offset: int) -> int:
        with self.lock:
            self.requests += 1
            if offset == 0 or self._current is None:
                self._current = self.dataset.day_after(self._last_served)
                self._last_served = self._current
            return self._current

    def assets(self, limit: int, offset: int) -> bytes:
        day = self.day_for(offset)
        with self.lock:  # one DuckDB connection: one query at a time
            rows = self.dataset.assets(day, limit=limit, offset=offset)
        return assets_body(day, rows)


def history_body(points: list[tuple[int, float, float]]) -> bytes:
    data = [
        {
            "priceUsd": _as_coincap_number(price),
            "time": day_ms,
            "circulatingSupply": _as_coincap_number(supply),
            "date": datetime.fromtimestamp(day_ms / 1000, tz=UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.000Z"
            ),
        }
        for day_ms, price, supply in points
    ]
    return json.dumps({"data": data, "timestamp": int(time.time() * 1000)}).encode()


def _handler(state: ReplayState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            history = HISTORY_PATH.fullmatch(url.path)
            if history:
                self._history(unquote(history.group(1)), query)
                return
            if url.path.rstrip("/") != f"{API_PREFIX}/assets":
                self._send(
                    HTTPStatus.NOT_FOUND, {"error": f"{url.path} is not served by the replay"}
                )
                return
            try:
                limit = int(query.get("limit", ["100"])[0])
                offset = int(query.get("offset", ["0"])[0])
            except ValueError:
                self._send(HTTPStatus.BAD_REQUEST, {"error": "limit and offset must be integers"})
                return
            if not 1 <= limit <= COINCAP_MAX_PAGE or offset < 0:
                self._send(
                    HTTPStatus.BAD_REQUEST, {"error": f"limit must be 1..{COINCAP_MAX_PAGE}"}
                )
                return
            self._send_bytes(HTTPStatus.OK, state.assets(limit, offset))

        def _history(self, coin_id: str, query: dict[str, list[str]]) -> None:
            interval = query.get("interval", [""])[0]
            if interval != "d1":
                message = "the replay holds one point a day: use interval=d1"
                self._send(HTTPStatus.BAD_REQUEST, {"error": message})
                return
            try:
                start, end = int(query["start"][0]), int(query["end"][0])
            except (KeyError, ValueError):
                self._send(
                    HTTPStatus.BAD_REQUEST, {"error": "start and end (epoch ms) are required"}
                )
                return
            with state.lock:
                state.requests += 1
                points = state.dataset.history(coin_id, start, end)
            self._send_bytes(HTTPStatus.OK, history_body(points))

        def _send(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            self._send_bytes(status, json.dumps(body).encode())

        def _send_bytes(self, status: HTTPStatus, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("replay: " + format, *args)

    return Handler


@contextmanager
def serve_replay(start_after_ms: int | None, *, port: int = 0) -> Iterator[str]:
    """Run the replay server in a background thread; yields its CoinCap base URL."""
    state = ReplayState(shared_dataset(), start_after_ms)
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(state))
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},  # shutdown() waits up to one poll interval
        name="replay-server",
        daemon=True,
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}{API_PREFIX}"
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the bundled 2021 replay as CoinCap v3.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--start-after", type=int, default=None, help="epoch ms; serve the days after it"
    )
    args = parser.parse_args()
    # Ctrl-C (SIGINT) stops it even when started from a shell that ignores SIGINT for its
    # background jobs (the ignore is inherited, and Python then installs no handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    logging.basicConfig(level=logging.INFO)
    with (
        contextlib.suppress(KeyboardInterrupt),
        serve_replay(args.start_after, port=args.port) as url,
    ):
        print(f"replaying 2021 CoinGecko data as CoinCap v3 at {url} (Ctrl-C to stop)", flush=True)
        threading.Event().wait()
    print("replay server stopped")


if __name__ == "__main__":
    main()
