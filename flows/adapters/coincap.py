"""CoinCap v3 HTTP client: plain Python (no Prefect), so it is tested against a real server.

Retries live here, at the network edge: timeouts, connection errors, 5xx and 429 are
retried with exponential backoff and full jitter (429 and 503 honour `Retry-After`).
Bad keys (401/403) and the v2 shutdown body are not retried: waiting cannot fix them.

Every wait is bounded. httpx's timeout is per read, so a server that trickles bytes could
hold a request for ever: each request also has a total deadline, each fetch (all attempts,
backoffs and `Retry-After` waits) a deadline of its own, and a `Retry-After` longer than
what is left of it ends the fetch at once. Bodies are read raw and decompressed here, with
caps on both the bytes received and the bytes they inflate to (a gzip bomb stops at the
cap, not at the machine's memory).

The key never leaves this module: it is redacted from every body and message, and no
exception carries an httpx request (whose headers hold it) out of the client.
"""

from __future__ import annotations

import json
import logging
import random
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Self
from urllib.parse import quote

import httpx

from flows.core.settings import COINCAP_MAX_PAGE
from flows.core.snapshot import InvalidSnapshot, shutdown_notice

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60.0
REDACTED = "[redacted]"
# A real 2,000-asset body is about 770 KB of JSON (250 KB gzip); the caps leave 20x room.
DEFAULT_MAX_COMPRESSED_BYTES = 8 * 2**20
DEFAULT_MAX_BODY_BYTES = 16 * 2**20


class CoinCapError(RuntimeError):
    """The API could not give us a usable answer."""


class CoinCapAuthError(CoinCapError):
    """401/403: the key is missing, wrong or out of credits."""


class CoinCapShutdownError(CoinCapError):
    """The endpoint answers with CoinCap's v2 deprecation body."""


class CoinCapUnavailable(CoinCapError):
    """Still failing after every retry, or out of time."""


class _Unreadable(Exception):
    """This answer cannot be read (too big, too slow, badly encoded): retry, then give up."""


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
        request_deadline_seconds: float = 30.0,
        fetch_deadline_seconds: float = 120.0,
        max_compressed_bytes: int = DEFAULT_MAX_COMPRESSED_BYTES,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        headers = {"Accept": "application/json", "Accept-Encoding": "gzip"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._secrets = [api_key] if api_key else []
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._request_deadline = request_deadline_seconds
        self._fetch_deadline = fetch_deadline_seconds
        self._max_compressed = max_compressed_bytes
        self._max_body = max_body_bytes
        self._sleep = sleep
        self.stats = RequestStats()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def redact(self, text: str) -> str:
        """`text` with the key (and anything that spells it) replaced."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def _redact_bytes(self, body: bytes) -> bytes:
        for secret in self._secrets:
            body = body.replace(secret.encode(), REDACTED.encode())
        return body

    def fetch_asset_pages(self, limit: int) -> list[bytes]:
        """Raw bodies of `GET /assets`, paged by `limit`/`offset` until `limit` assets, all
        within one fetch deadline."""
        deadline = time.monotonic() + self._fetch_deadline
        pages: list[bytes] = []
        offset = 0
        while offset < limit:
            page_size = min(COINCAP_MAX_PAGE, limit - offset)
            body = self.get("/assets", {"limit": page_size, "offset": offset}, deadline=deadline)
            pages.append(body)
            returned = _count_assets(body)
            if returned is None or returned < page_size:
                break  # the API has no more assets (or the body is bad: validation says why)
            offset += page_size
        return pages

    def fetch_rates(self, deadline_seconds: float) -> bytes:
        """Raw body of `GET /rates`: every currency's USD value, one request (about 170
        rates, 30 KB), with the same retries and size caps as `/assets` and a deadline of
        its own."""
        return self.get("/rates", {}, deadline=time.monotonic() + deadline_seconds)

    def fetch_history(self, coin_id: str, interval: str, start_ms: int, end_ms: int) -> bytes:
        """Raw body of `GET /assets/{id}/history` for one window (epoch ms, both given)."""
        path = f"/assets/{quote(coin_id, safe='')}/history"
        return self.get(path, {"interval": interval, "start": start_ms, "end": end_ms})

    def get(self, path: str, params: dict[str, Any], *, deadline: float | None = None) -> bytes:
        """GET with retries; returns the raw (decompressed, redacted) body of a 2xx answer.
        Raises only `CoinCapError`s, whose messages are ours and hold no key."""
        url = f"{str(self._http.base_url).rstrip('/')}{path}"
        deadline = deadline if deadline is not None else time.monotonic() + self._fetch_deadline
        for attempt in range(1, self._max_attempts + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                raise CoinCapUnavailable(
                    f"GET {url}: out of time after {attempt - 1} attempt(s) "
                    f"(fetch deadline {self._fetch_deadline:.0f}s)"
                )
            self.stats.requests += 1
            retry_after: float | None = None
            try:
                status, headers, body = self._request(
                    path, params, min(left, self._request_deadline)
                )
            except _Unreadable as exc:
                failure = str(exc)
            except httpx.HTTPError as exc:  # transport, timeout, protocol: never the request
                failure = f"{exc.__class__.__name__}: {self.redact(str(exc))[:200]}"
            else:
                if 200 <= status < 300:
                    return body
                _raise_if_final(status, headers, body, url, self.redact)
                failure = f"HTTP {status}"
                retry_after = _retry_after_seconds(headers)
            if attempt == self._max_attempts:
                raise CoinCapUnavailable(f"GET {url} failed {attempt} times, last: {failure}")
            delay = retry_after if retry_after is not None else self._backoff_delay(attempt)
            left = deadline - time.monotonic()
            if delay >= left:
                raise CoinCapUnavailable(
                    f"GET {url}: {failure}; waiting {delay:.0f}s for the next attempt would pass "
                    f"the fetch deadline ({max(left, 0):.0f}s left)"
                )
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

    def _request(
        self, path: str, params: dict[str, Any], seconds: float
    ) -> tuple[int, httpx.Headers, bytes]:
        """One request read to the end within `seconds` and the size caps."""
        started = time.monotonic()
        per_read = httpx.Timeout(min(self._timeout, seconds))
        with self._http.stream("GET", path, params=params, timeout=per_read) as response:
            received = bytearray()
            for chunk in response.iter_raw():
                received += chunk
                if len(received) > self._max_compressed:
                    raise _Unreadable(
                        f"answer larger than {self._max_compressed:,} bytes (the cap on what is "
                        "received)"
                    )
                if time.monotonic() - started > seconds:
                    raise _Unreadable(
                        f"answer not complete after {seconds:.0f}s (the request's deadline)"
                    )
            body = self._decode(bytes(received), response.headers.get("content-encoding", ""))
            return response.status_code, response.headers, self._redact_bytes(body)

    def _decode(self, raw: bytes, encoding: str) -> bytes:
        """Undo `Content-Encoding` (gzip, deflate or none), never inflating past the cap."""
        encodings = [e.strip().lower() for e in encoding.split(",") if e.strip()]
        body = raw
        for name in reversed(encodings):
            if name == "identity":
                continue
            if name not in ("gzip", "x-gzip", "deflate"):
                raise _Unreadable(f"answer in an encoding we did not ask for ({name[:20]!r})")
            wbits = 16 + zlib.MAX_WBITS if name != "deflate" else zlib.MAX_WBITS
            inflater = zlib.decompressobj(wbits)
            try:
                body = inflater.decompress(body, self._max_body + 1)
            except zlib.error as exc:
                raise _Unreadable(f"answer says {name} but is not ({exc})") from None
            if len(body) > self._max_body or inflater.unconsumed_tail:
                raise _Unreadable(
                    f"answer inflates to more than {self._max_body:,} bytes (the cap on a body)"
                )
            if not inflater.eof:
                raise _Unreadable(f"answer is truncated {name}")
        if len(body) > self._max_body:
            raise _Unreadable(f"answer larger than {self._max_body:,} bytes (the cap on a body)")
        return body

    def _backoff_delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, base * 2^(attempt-1)], capped."""
        ceiling = min(MAX_BACKOFF_SECONDS, self._backoff * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)


def _raise_if_final(
    status: int, headers: httpx.Headers, body: bytes, url: str, redact: Callable[[str], str]
) -> None:
    """Raise for answers a retry cannot fix; return for the retryable ones."""
    notice = _shutdown_notice_of(headers, body)
    if notice is not None:
        raise CoinCapShutdownError(
            f"GET {url} answered with CoinCap's shutdown notice ({redact(notice)!r}). The v2 API "
            "is gone: set CRYPTOLYTICS_COINCAP_BASE_URL to https://rest.coincap.io/v3 and a v3 key."
        )
    if status in (401, 403):
        raise CoinCapAuthError(
            f"GET {url} was refused with HTTP {status}: the CoinCap API key is missing, wrong "
            "or out of credits. Set CRYPTOLYTICS_COINCAP_API_KEY (get a key at "
            "https://pro.coincap.io), or set CRYPTOLYTICS_SOURCE=replay to run offline."
        )
    if status == 429 or status >= 500:
        return
    text = redact(body.decode("utf-8", "replace"))[:200]  # redact first: no half key
    raise CoinCapError(f"GET {url} failed with HTTP {status}: {text!r}")


def _shutdown_notice_of(headers: httpx.Headers, body: bytes) -> str | None:
    if "json" not in headers.get("content-type", "") and body[:1] != b"{":
        return None
    try:
        return shutdown_notice(json.loads(body))
    except (ValueError, RecursionError):
        return None


def _retry_after_seconds(headers: httpx.Headers) -> float | None:
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None
    return seconds if seconds >= 0 else 0.0


def _count_assets(body: bytes) -> int | None:
    try:
        data = json.loads(body).get("data")
    except (ValueError, AttributeError, RecursionError):
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
        except (ValueError, RecursionError) as exc:
            raise InvalidSnapshot(f"page {number} is not JSON ({exc.__class__.__name__})") from None
    data: list[Any] = []
    for number, body in enumerate(bodies):
        page_data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(page_data, list):
            raise InvalidSnapshot(f"page {number} has no `data` list")
        data.extend(page_data)
    return json.dumps({"data": data, "timestamp": bodies[0].get("timestamp")}).encode()
