"""A CoinCap v3 stand-in on 127.0.0.1 for the benchmark's ticks, shaped like live ones.

The replay source moves one day per tick, so a tick on it moves the facts' 8-day serving
window by a day (576,000 rows out) where a live tick moves it by 5 minutes, and it has no
`/rates`. The suite's ticks take the live path instead (source `coincap`, an API key, this
server as the base URL): each first-page `/assets` answer is a replay day's real 2021
prices for 2,000 coins (the next day each time, so prices move) stamped with the time of the
request, and `/rates` is CoinCap's own example body (tests/fixtures, credited in the README)
stamped the same way. Bench only: it serves a benchmark workspace's lake, never a user's,
and nothing it serves is shown as live data anywhere.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bench.app_queries import EXAMPLE_RATES
from flows.replay.dataset import shared_dataset
from flows.replay.server import API_PREFIX, assets_body


class LiveLike:
    """Which replay day the next snapshot carries; shared by the server's threads."""

    def __init__(self, first_day_index: int, coins: int) -> None:
        self.dataset = shared_dataset()
        self.index, self.coins = first_day_index, coins
        self.lock = threading.Lock()
        self._body = b""

    def assets(self, offset: int) -> bytes:
        with self.lock:
            if offset == 0 or not self._body:
                days = self.dataset.days
                day = days[self.index % len(days)]
                self.index += 1
                now_ms = int(time.time() * 1000)
                self._body = assets_body(now_ms, self.dataset.assets(day, limit=self.coins))
            return self._body if offset == 0 else json.dumps({"data": []}).encode()

    @staticmethod
    def rates() -> bytes:
        body = json.loads(EXAMPLE_RATES.read_bytes())
        body["timestamp"] = int(time.time() * 1000)
        return json.dumps(body).encode()


@contextmanager
def serve_live_like(first_day_index: int, coins: int) -> Iterator[str]:
    """Run it in a background thread; yields its CoinCap base URL."""
    state = LiveLike(first_day_index, coins)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            path = url.path.rstrip("/")
            if path == f"{API_PREFIX}/assets":
                offset = int(parse_qs(url.query).get("offset", ["0"])[0])
                self._send(200, state.assets(offset))
            elif path == f"{API_PREFIX}/rates":
                self._send(200, state.rates())
            else:
                self._send(404, b'{"error": "not served by the benchmark"}')

        def _send(self, status: int, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}{API_PREFIX}"
    finally:
        server.shutdown()
        server.server_close()
