"""CoinCap v3 HTTP client: plain Python (no Prefect), so it is tested against a real server.

Retries live here, at the network edge: timeouts, connection errors, 5xx and 429 are
retried with exponential backoff and full jitter (429 and 503 honour `Retry-After`).
Bad keys (401/403) and the v2 shutdown body are not retried: waiting cannot fix them.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Self
from urllib.parse import quote

import httpx

from flows.settings import COINCAP_MAX_PAGE
from flows.snapshot import InvalidSnapshot, shutdown_notice

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60.0
MAX_RETRY_AFTER_SECONDS = 300.0


class CoinCapError(RuntimeError):
    """The API could not give us a usable answer."""


class CoinCapAuthError(CoinCapError):
    """401/403: the key is missing, wrong or out of credits."""


class CoinCapShutdownError(CoinCapError):
    """The endpoint answers with CoinCap's v2 deprecation body."""


class CoinCapUnavailable(CoinCapError):
    """Still failing after every retry."""


@dataclass
class RequestStats:
    """What the client did, for logs and run summaries."""

    requests: int = 0
    retries: int = 0


class CoinCapClient:
    """A small synchronous client for the endpoints we use."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 20.0,
        max_attempts: int = 5,
        backoff_seconds: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        headers = {"Accept": "application/json", "Accept-Encoding": "gzip"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._sleep = sleep
        self.stats = RequestStats()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def fetch_asset_pages(self, limit: int) -> list[bytes]:
        """Raw bodies of `GET /assets`, paged by `limit`/`offset` until `limit` assets."""
        pages: list[bytes] = []
        offset = 0
        while offset < limit:
            page_size = min(COINCAP_MAX_PAGE, limit - offset)
            body = self.get("/assets", {"limit": page_size, "offset": offset})
            pages.append(body)
            returned = _count_assets(body)
            if returned is None or returned < page_size:
                break  # the API has no more assets (or the body is bad: validation says why)
            offset += page_size
        return pages

    def fetch_history(self, coin_id: str, interval: str, start_ms: int, end_ms: int) -> bytes:
        """Raw body of `GET /assets/{id}/history` for one window (epoch ms, both given)."""
        path = f"/assets/{quote(coin_id, safe='')}/history"
        return self.get(path, {"interval": interval, "start": start_ms, "end": end_ms})

    def get(self, path: str, params: dict[str, Any]) -> bytes:
        """GET with retries; returns the raw body of a 2xx answer."""
        url = f"{str(self._http.base_url).rstrip('/')}{path}"
        for attempt in range(1, self._max_attempts + 1):
            self.stats.requests += 1
            try:
                response = self._http.get(path, params=params)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                failure, retry_after = f"{exc.__class__.__name__}: {exc}", None
            else:
                if response.is_success:
                    return response.content
                _raise_if_final(response, url)
                failure = f"HTTP {response.status_code}"
                retry_after = _retry_after_seconds(response)
            if attempt == self._max_attempts:
                raise CoinCapUnavailable(f"GET {url} failed {attempt} times, last: {failure}")
            delay = retry_after if retry_after is not None else self._backoff_delay(attempt)
            log.warning(
                "GET %s: %s (attempt %d/%d), retrying in %.1fs",
                url,
                failure,
                attempt,
                self._max_attempts,
                delay,
            )
            self.stats.retries += 1
            self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff_delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, base * 2^(attempt-1)], capped."""
        ceiling = min(MAX_BACKOFF_SECONDS, self._backoff * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)


def _raise_if_final(response: httpx.Response, url: str) -> None:
    """Raise for answers a retry cannot fix; return for the retryable ones."""
    notice = _shutdown_notice_of(response)
    if notice is not None:
        raise CoinCapShutdownError(
            f"GET {url} answered with CoinCap's shutdown notice ({notice!r}). The v2 API is "
            "gone: set CRYPTOLYTICS_COINCAP_BASE_URL to https://rest.coincap.io/v3 and a v3 key."
        )
    status = response.status_code
    if status in (401, 403):
        raise CoinCapAuthError(
            f"GET {url} was refused with HTTP {status}: the CoinCap API key is missing, wrong "
            "or out of credits. Set CRYPTOLYTICS_COINCAP_API_KEY (get a key at "
            "https://pro.coincap.io), or set CRYPTOLYTICS_SOURCE=replay to run offline."
        )
    if status == 429 or status >= 500:
        return
    raise CoinCapError(f"GET {url} failed with HTTP {status}: {response.text[:200]!r}")


def _shutdown_notice_of(response: httpx.Response) -> str | None:
    if "json" not in response.headers.get("content-type", "") and response.content[:1] != b"{":
        return None
    try:
        return shutdown_notice(response.json())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _count_assets(body: bytes) -> int | None:
    try:
        data = json.loads(body).get("data")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None
    return len(data) if isinstance(data, list) else None


def combine_pages(pages: list[bytes]) -> bytes:
    """One body per snapshot. A single page (the usual case, up to 2,000 assets) is kept
    byte for byte; several pages become one body with the first page's timestamp."""
    if len(pages) == 1:
        return pages[0]
    bodies = []
    for number, page in enumerate(pages):
        try:
            bodies.append(json.loads(page))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidSnapshot(f"page {number} is not JSON ({exc})") from None
    data: list[Any] = []
    for number, body in enumerate(bodies):
        page_data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(page_data, list):
            raise InvalidSnapshot(f"page {number} has no `data` list")
        data.extend(page_data)
    return json.dumps({"data": data, "timestamp": bodies[0].get("timestamp")}).encode()
