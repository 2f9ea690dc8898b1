"""End to end in a real browser: `streamlit run` on 127.0.0.1 over a warehouse built by the
pipeline's own steps, driven by Playwright in Debian's chromium (no browser download).
Screenshots land in test-artifacts/screenshots/."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flows.core.settings import PROJECT_ROOT, Settings
from flows.runtime.stack import streamlit_command
from testkit.browser import CHROMIUM, CHROMIUM_FLAGS
from testkit.pipeline import replay_bodies, tick

SCREENSHOTS = PROJECT_ROOT / "test-artifacts" / "screenshots"

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "Debian chromium is not installed (apt-get install chromium); .ci/run installs it"
        )
    root = tmp_path_factory.mktemp("browser")
    env = {
        **os.environ,
        "CRYPTOLYTICS_LAKE_URL": str(root / "lake"),
        "CRYPTOLYTICS_DUCKDB_PATH": str(root / "warehouse.duckdb"),
        "CRYPTOLYTICS_SERVING_DIR": str(root / "serving"),
        "CRYPTOLYTICS_COINCAP_API_KEY": "",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key in (
            "CRYPTOLYTICS_LAKE_URL",
            "CRYPTOLYTICS_DUCKDB_PATH",
            "CRYPTOLYTICS_SERVING_DIR",
        ):
            patch.setenv(key, env[key])
        tick(Settings(), [("replay", ts, body) for ts, body in replay_bodies(8)])
    port = free_port()
    server = subprocess.Popen(
        streamlit_command(port),
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser_page(app_url: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        yield page
        browser.close()


def open_page(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("h1", timeout=60_000)
    page.wait_for_load_state("networkidle")


def expect_no_exception(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0


def test_market_page_renders_table_charts_and_replay_banner(browser_page, app_url: str) -> None:
    page = browser_page
    open_page(page, app_url)
    page.get_by_text("Replay, not live data").wait_for(timeout=30_000)
    page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=30_000)
    page.locator(".vega-embed").first.wait_for(timeout=30_000)
    assert page.locator("[data-testid='stDataFrame']").count() == 3
    assert page.locator("[data-testid='stMetric']").count() == 4
    expect_no_exception(page)
    page.screenshot(path=SCREENSHOTS / "market.png", full_page=True)


def test_coin_page_changes_range_and_keeps_it_in_the_url(browser_page, app_url: str) -> None:
    page = browser_page
    open_page(page, f"{app_url}/coin?coin=ethereum&range=ALL")
    page.get_by_role("heading", name="Ethereum (ETH)").wait_for(timeout=30_000)
    page.locator(".vega-embed").nth(2).wait_for(timeout=30_000)
    assert page.get_by_text("8 points: daily closes.").count() == 1
    page.get_by_text("1M", exact=True).click()
    page.wait_for_url("**range=1M**", timeout=30_000)
    page.get_by_text("points: hourly closes.").wait_for(timeout=30_000)
    assert page.locator(".vega-embed").count() == 3
    expect_no_exception(page)
    page.screenshot(path=SCREENSHOTS / "coin.png", full_page=True)


def test_compare_and_health_pages_render(browser_page, app_url: str) -> None:
    page = browser_page
    open_page(page, f"{app_url}/compare?coins=bitcoin,ethereum,solana&range=ALL")
    page.locator(".vega-embed").nth(1).wait_for(timeout=30_000)
    expect_no_exception(page)
    page.screenshot(path=SCREENSHOTS / "compare.png", full_page=True)

    open_page(page, f"{app_url}/health")
    page.get_by_text("Source: replay").wait_for(timeout=30_000)
    page.locator(".vega-embed").first.wait_for(timeout=30_000)
    assert page.locator("[data-testid='stDataFrame']").count() == 2
    expect_no_exception(page)
    page.screenshot(path=SCREENSHOTS / "health.png", full_page=True)
