"""Shared fixtures: real recorded CoinCap bodies and isolated settings per test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.testing.utilities import prefect_test_harness

from flows.settings import Settings

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
        "CRYPTOLYTICS_HTTP_BACKOFF_SECONDS": "0.01",
        "CRYPTOLYTICS_HTTP_TIMEOUT_SECONDS": "2",
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
