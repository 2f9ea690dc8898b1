"""Shared fixtures (real recorded CoinCap bodies, isolated settings per test) and the test tiers.

Every test belongs to one tier, marked on its module or itself (the highest mark wins):

- `unit`: no Prefect server, no dbt, no warehouse file (an HTTP server on 127.0.0.1 at
  most): seconds (`make test-fast`);
- `integration`: real DuckDB, dbt, a Prefect test server, HTTP servers on 127.0.0.1;
- `e2e`: a browser, the GCS and BigQuery emulators, the whole stack, SIGKILLed processes.

`pytest --tier unit` (or integration, e2e) runs one tier; plain `pytest` runs them all.
A test that uses an emulator fixture is end-to-end whatever its module says.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.testing.utilities import prefect_test_harness

from flows.core.settings import Settings
from testkit import emulators
from testkit.emulators import Emulator
from testkit.signals import restore_sigint

FIXTURES = Path(__file__).parent / "fixtures"
RECORDED_ASSETS = FIXTURES / "coincap" / "v3_assets_2025-03-16T183431Z.json"
RECORDED_TIMESTAMP = 1742150071411


@pytest.fixture
def recorded_assets() -> bytes:
    """A real CoinCap v3 `/assets` body: 100 assets, with CoinCap's real oddities."""
    return RECORDED_ASSETS.read_bytes()


def body_variant(
    raw: bytes, *, timestamp_ms: int, price_factor: float = 1.0, drop: int = 0, **overrides: Any
) -> bytes:
    """The recorded body at another time: prices scaled (as strings, CoinCap style),
    the last `drop` assets removed, top-level keys overridden."""
    body = json.loads(raw)
    body["timestamp"] = timestamp_ms
    assets = body["data"][: len(body["data"]) - drop]
    for asset in assets:
        asset["priceUsd"] = f"{float(asset['priceUsd']) * price_factor:.16f}"
    body["data"] = assets
    body.update(overrides)
    return json.dumps(body).encode()


restore_sigint()  # tests run as a background job still stop the servers they start

TIERS = ("unit", "integration", "e2e")
E2E_FIXTURES = {"gcs_emulator", "bigquery_emulator"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--tier", choices=TIERS, help="run only the tests of this tier")
    parser.addoption(
        "--kill-cycles",
        type=int,
        default=14,
        help="SIGKILLed pipeline processes in the fault-injection test: 2 at each of its 7 "
        "points by default (CI; each costs two ticks), 70 for a deep run, 7 for a quick look",
    )


def tier_of(item: pytest.Item) -> str:
    marked = [tier for tier in TIERS if item.get_closest_marker(tier)]
    if item.get_closest_marker("prefect"):
        marked.append("integration")
    if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
        marked.append("e2e")
    if not marked:
        raise pytest.UsageError(f"{item.nodeid} has no tier: mark it unit, integration or e2e")
    return max(marked, key=TIERS.index)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = config.getoption("--tier")
    if wanted is None:
        for item in items:
            tier_of(item)  # every test has one
        return
    keep = [item for item in items if tier_of(item) == wanted]
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = keep


@pytest.fixture(scope="session")
def kill_cycles(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--kill-cycles"))


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings pointing at a fresh lake and warehouse under tmp_path, replay source, no key.

    Set through the environment, the way users set them, so `get_settings()` inside flows
    sees the same values."""
    values = {
        "CRYPTOLYTICS_TARGET": "local",
        "CRYPTOLYTICS_LAKE_URL": str(tmp_path / "lake"),
        "CRYPTOLYTICS_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
        "CRYPTOLYTICS_SERVING_DIR": str(tmp_path / "serving"),
        "CRYPTOLYTICS_SOURCE": "replay",
        "CRYPTOLYTICS_COINCAP_API_KEY": "",
        # one replay day per tick from the first: tests count snapshots (test_stack and
        # test_source check the demo's seed of settings.replay_seed_days)
        "CRYPTOLYTICS_REPLAY_SEED_DAYS": "1",
        "CRYPTOLYTICS_HTTP_BACKOFF_SECONDS": "0.01",
        "CRYPTOLYTICS_HTTP_TIMEOUT_SECONDS": "2",
        # live ticks ask `/rates` after `/assets` by default; tests that script the API's
        # answers in order are about `/assets` (tests/test_rates.py turns it back on)
        "CRYPTOLYTICS_FETCH_RATES": "false",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # no developer .env leaks into a test
    return Settings()


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One Prefect server for the whole session (it takes ~20 s to start here)."""
    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with emulators.gcs_emulator(tmp_path_factory.mktemp("gcs")) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def bigquery_emulator(
    gcs_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Emulator]:
    log = tmp_path_factory.mktemp("bqemulator") / "emulator.log"
    with emulators.bigquery_emulator(gcs_emulator, log) as emulator:
        yield emulator
