"""The hostile-response corpus (tests/fixtures/hostile/, one JSON file per case) through the
real `pipeline` flow in live mode, against an HTTP server on 127.0.0.1.

Each case says what the server does (status, headers, a body derived from the real recorded
`/assets` body, encodings, trickling, bombs) and the outcome we promise: `fetch_failed` (the
run fails, nothing is written), `quarantined` (the body is kept with its reason, the run
fails, the warehouse is untouched), `rows_rejected` (the snapshot loads without the bad
assets, each recorded as a dead letter) or `loaded`. After every few cases (and the last)
the next, good, snapshot must land, and the invariant must hold: the warehouse equals the
lake per snapshot, nothing is duplicated, the models agree with the raw rows and the app's
serving copy with the models, and the API key is nowhere on disk.
"""

from __future__ import annotations

import gzip
import json
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from flows.core.settings import Settings
from flows.pipeline import pipeline
from testkit.pipeline import assert_warehouse_equals_lake
from tests.conftest import body_variant
from tests.helpers import files_containing

pytestmark = [
    pytest.mark.integration,
    pytest.mark.prefect,
    pytest.mark.usefixtures("prefect_server"),
]

CORPUS = Path(__file__).parent / "fixtures" / "hostile"
CASES = {path.stem: json.loads(path.read_text()) for path in sorted(CORPUS.glob("*.json"))}
KEY = "sk-corpus-SECRET-7731"
OUTCOMES = {"fetch_failed", "quarantined", "rows_rejected", "loaded"}


def test_the_corpus_is_large_and_well_formed() -> None:
    assert len(CASES) >= 60
    for name, case in CASES.items():
        assert case["expect"]["outcome"] in OUTCOMES, name
        assert case["description"], name
        families = {"http", "body", "paging", "number", "text", "time"}
        assert name.split("-")[0] in families, name


def _resolve(value: Any, now_ms: int) -> Any:
    if isinstance(value, str) and value.startswith("$now"):
        if value == "$now_string":
            return str(now_ms)
        if value == "$now_seconds":
            return now_ms // 1000
        if value == "$now_float":
            return now_ms + 0.5
        return now_ms + int(value.removeprefix("$now") or 0)
    return value


def hostile_body(good: bytes, response: dict[str, Any], now_ms: int, request: Request) -> bytes:
    """The body a case serves, derived from the good one."""
    if "body" in response:
        return response["body"].encode()
    if "body_hex" in response:
        return bytes.fromhex(response["body_hex"])
    if "nested_depth" in response:
        return b"[" * response["nested_depth"] + b"]" * response["nested_depth"]
    if response.get("echo_headers"):
        return f"you sent {json.dumps(dict(request.headers))}".encode()
    if "gzip_bomb_bytes" in response:
        return gzip.compress(b" " * response["gzip_bomb_bytes"])
    body = json.loads(good)
    if response.get("key_in_name"):
        body["data"][0]["name"] = f"proxy saw {request.headers['Authorization']}"
    for change in response.get("mutate", []):
        if change["op"] == "set_each":
            for asset in body["data"]:
                asset[change["field"]] = change["value"]
        elif change["op"] in ("grow", "shrink"):
            template = body["data"]
            body["data"] = [
                {**template[i % len(template)], "id": f"coin-{i}", "rank": str(i + 1)}
                if i >= len(template)
                else template[i]
                for i in range(change["count"])
            ]
        else:
            *parents, last = change["path"]
            holder = body
            for part in parents:
                holder = holder[part]
            if change["op"] == "delete":
                del holder[last]
            else:
                holder[last] = _resolve(change["value"], now_ms)
    raw = json.dumps(body, separators=(",", ":")).encode()
    if "replace" in response:
        old, new = (part.encode() for part in response["replace"])
        assert old in raw, response["replace"]
        raw = raw.replace(old, new, 1)
    if "truncate" in response:
        raw = raw[: int(len(raw) * response["truncate"])]
    if "padding_bytes" in response:
        raw += b" " * response["padding_bytes"]
    return raw


def respond(response: dict[str, Any], body: bytes) -> Response:
    headers = dict(response.get("headers", {}))
    if response.get("encoding") == "gzip":
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    elif response.get("encoding") == "deflate":
        body = zlib.compress(body)
        headers["Content-Encoding"] = "deflate"
    if "truncate_encoded" in response:
        body = body[: response["truncate_encoded"]]
    status = response.get("status", 200)
    if "trickle_seconds" in response:
        pause = response["trickle_seconds"]

        def trickle() -> Iterator[bytes]:
            for byte in body[:40]:  # 12 s at 0.3 s a byte, unless the client hangs up
                yield bytes([byte])
                time.sleep(pause)

        return Response(trickle(), status=status, headers=headers, direct_passthrough=True)
    return Response(body, status=status, headers=headers, content_type="application/json")


class Api:
    """A CoinCap stand-in: a good snapshot stamped now, or the current case's answer."""

    def __init__(self, recorded: bytes) -> None:
        self.recorded = recorded
        self.case: dict[str, Any] | None = None
        self.last_good: bytes | None = None

    def good(self) -> bytes:
        self.last_good = body_variant(self.recorded, timestamp_ms=int(time.time() * 1000))
        return self.last_good

    def __call__(self, request: Request) -> Response:
        if self.case is None:
            return Response(self.good(), content_type="application/json")
        response = self.case["response"]
        if response.get("same_as_last"):
            assert self.last_good is not None
            return Response(self.last_good, content_type="application/json")
        now_ms = int(time.time() * 1000)
        base = body_variant(self.recorded, timestamp_ms=now_ms)
        return respond(response, hostile_body(base, response, now_ms, request))


def counts(settings: Settings) -> tuple[int, int, int]:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return con.execute(
            "select (select count(*) from raw.coincap_assets), "
            "(select count(*) from raw.lake_files), (select count(*) from prod.facts_coins)"
        ).fetchall()[0]


def dead_letter_reasons(settings: Settings) -> list[str]:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return [
            reason for (reason,) in con.execute("select reason from ops.dead_letters").fetchall()
        ]


def quarantine_reasons(lake: Path) -> list[str]:
    return [json.loads(p.read_text())["reason"] for p in lake.rglob("*.reason.json")]


# A good tick after every case doubled the test's 156 pipeline runs (14 of CI's minutes);
# a wedge a case leaves is still caught within this many cases, and named by the range.
GOOD_EVERY = 4


def test_every_hostile_case_hurts_only_itself(
    settings: Settings,
    httpserver: HTTPServer,
    recorded_assets: bytes,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    for name, value in {
        "CRYPTOLYTICS_SOURCE": "coincap",
        "CRYPTOLYTICS_COINCAP_API_KEY": KEY,
        "CRYPTOLYTICS_COINCAP_BASE_URL": httpserver.url_for("/v3"),
        "CRYPTOLYTICS_ASSET_LIMIT": "100",
        "CRYPTOLYTICS_HTTP_MAX_ATTEMPTS": "2",
        "CRYPTOLYTICS_HTTP_BACKOFF_SECONDS": "0.01",
        "CRYPTOLYTICS_HTTP_TIMEOUT_SECONDS": "2",
        "CRYPTOLYTICS_HTTP_REQUEST_DEADLINE_SECONDS": "2",
        "CRYPTOLYTICS_FETCH_DEADLINE_SECONDS": "20",
        "CRYPTOLYTICS_HTTP_MAX_RESPONSE_BYTES": str(2**20),
        "CRYPTOLYTICS_HTTP_MAX_BODY_BYTES": str(4 * 2**20),
    }.items():
        monkeypatch.setenv(name, value)
    api = Api(recorded_assets)
    httpserver.expect_request("/v3/assets").respond_with_handler(api)
    lake = tmp_path / "lake"
    assert pipeline(return_state=True).is_completed()
    snapshots = 1
    seen: dict[str, str] = {}

    for number, (name, case) in enumerate(CASES.items(), start=1):
        expect = case["expect"]
        before = counts(settings)
        notes_before = Counter(quarantine_reasons(lake))
        api.case = case
        state = pipeline(return_state=True)
        api.case = None
        message = str(state.message) + str(state.result(raise_on_failure=False))
        outcome = expect["outcome"]
        seen[name] = outcome
        if outcome in ("fetch_failed", "quarantined"):
            assert state.is_failed(), (name, state.message)
            assert expect["reason"] in message, (name, message)
            assert counts(settings) == before, name
            new_notes = list((Counter(quarantine_reasons(lake)) - notes_before).elements())
            assert len(new_notes) == (outcome == "quarantined"), (name, new_notes)
            if outcome == "quarantined":
                assert expect["reason"] in new_notes[0], (name, new_notes)
        else:
            assert state.is_completed(), (name, message)
            loaded = counts(settings)[0] - before[0]
            assert loaded == expect["rows"], (name, loaded)
            snapshots += 1 if expect["rows"] else 0
            if outcome == "rows_rejected":
                assert any(expect["reason"] in why for why in dead_letter_reasons(settings)), name
        if number % GOOD_EVERY and number < len(CASES):
            continue  # a case that wedged the pipeline fails the next loaded case, or below
        # the good snapshot served next lands, and everything still agrees
        good = pipeline(return_state=True)
        since = list(CASES)[max(0, number - GOOD_EVERY) : number]
        assert good.is_completed(), (since, good.message)
        snapshots += 1
        assert assert_warehouse_equals_lake(settings) == snapshots, since

    assert set(seen.values()) == OUTCOMES
    leaks = files_containing(KEY.encode(), [tmp_path, Path(settings.duckdb_path).parent])
    assert leaks == [], leaks  # lake, quarantine, warehouse, serving copies, logs
