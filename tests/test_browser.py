"""End to end in a real browser: `streamlit run` on 127.0.0.1 over a warehouse built by the
pipeline's own steps, driven by Playwright in Debian's chromium (no browser download).
Screenshots land in test-artifacts/screenshots/."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

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


# Markdown and HTML in a coin's name, symbol and explorer, as a hostile or broken API could
# send them: 203.0.113.0/24 is TEST-NET-3 (nothing answers; a request there is the failure)
OUTSIDE = "203.0.113.9"
HOSTILE_NAME = (
    f"Evil ![pixel](http://{OUTSIDE}/pixel.png) [win](http://{OUTSIDE}/win) "
    f"<img src=http://{OUTSIDE}/img.png> :red[alarm]"
)
HOSTILE_SYMBOL = "EV<b>IL</b>"
HOSTILE_RANK = 10  # its id, history and figures stay; only its latest attributes turn


def with_hostile_coin(body: bytes) -> bytes:
    """The snapshot with its tenth coin renamed hostile (prices and ranks unchanged)."""
    snapshot = json.loads(body)
    snapshot["data"][HOSTILE_RANK - 1].update(
        name=HOSTILE_NAME, symbol=HOSTILE_SYMBOL, explorer="javascript:alert(1)"
    )
    return json.dumps(snapshot).encode()


def hostile_id() -> str:
    return json.loads(replay_bodies(8)[-1][1])["data"][HOSTILE_RANK - 1]["id"]


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
        days = replay_bodies(8)
        days[-1] = (days[-1][0], with_hostile_coin(days[-1][1]))
        tick(Settings(), [("replay", ts, body) for ts, body in days])
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
    # the viewer's toolbar (.streamlit/config.toml): no Deploy button for analysts
    assert page.get_by_role("button", name="Deploy").count() == 0


def test_market_page_renders_table_charts_and_replay_banner(browser_page, app_url: str) -> None:
    page = browser_page
    open_page(page, app_url)
    page.get_by_text("Replay, not live data").wait_for(timeout=30_000)
    page.locator("[data-testid='stDataFrame']").nth(2).wait_for(timeout=30_000)  # + movers
    page.locator(".vega-embed").first.wait_for(timeout=30_000)
    expect(page.locator("[data-testid='stDataFrame']")).to_have_count(3, timeout=30_000)
    expect(page.locator("[data-testid='stMetric']")).to_have_count(4, timeout=30_000)
    # the grid holds the changes as numbers (its cells' data, which it sorts by), shown
    # formatted; as text, "+7.08%" would sort before "+28.93%"
    ranking = page.locator("[data-testid='stDataFrame']").first
    column = ranking.locator("th", has_text="24h %").get_attribute("aria-colindex")
    cells = ranking.locator(f"tbody td[aria-colindex='{column}']").all_inner_texts()
    assert len(cells) >= 5
    [float(cell) for cell in cells if cell]  # ValueError on "+7.08%"
    expect_no_exception(page)
    page.screenshot(path=SCREENSHOTS / "market.png", full_page=True)


def test_coin_page_changes_range_and_keeps_it_in_the_url(browser_page, app_url: str) -> None:
    page = browser_page
    open_page(page, f"{app_url}/coin?coin=ethereum&range=ALL")
    page.get_by_role("heading", name="Ethereum (ETH)").wait_for(timeout=30_000)
    page.locator(".vega-embed").nth(2).wait_for(timeout=30_000)
    expect(page.get_by_text("8 points: daily closes.")).to_have_count(1, timeout=30_000)
    page.get_by_text("1M", exact=True).click()
    page.wait_for_url("**range=1M**", timeout=30_000)
    page.get_by_text("points: one point a day").wait_for(timeout=30_000)  # the daily replay
    expect(page.locator(".vega-embed")).to_have_count(3, timeout=30_000)
    expect_no_exception(page)
    page.screenshot(path=SCREENSHOTS / "coin.png", full_page=True)
    # in BTC: the URL keeps it, and the chart's data say their unit
    page.get_by_test_id("stSelectbox").filter(has_text="Prices in").click()
    page.get_by_role("option", name="BTC", exact=True).click()
    page.wait_for_url("**quote=BTC**", timeout=30_000)
    page.get_by_text("divided by BTC's USD price").wait_for(timeout=30_000)
    with page.expect_download(timeout=30_000) as download:
        page.get_by_role("button", name="Download CSV").first.click()
    saved = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert download.value.suggested_filename == "cryptolytics-ethereum-1M-btc.csv"
    assert saved[0].split(",")[:3] == ["observed_at", "price_btc", "market_cap_btc"]
    expect_no_exception(page)


def test_compare_history_and_health_pages_render(browser_page, app_url: str) -> None:
    page = browser_page
    open_page(page, f"{app_url}/compare?coins=bitcoin,ethereum,solana&range=ALL")
    page.locator(".vega-embed").nth(2).wait_for(timeout=30_000)  # returns, ranks, correlation
    page.get_by_text("Max drawdown").first.wait_for(state="attached", timeout=30_000)
    expect_no_exception(page)
    page.screenshot(path=SCREENSHOTS / "compare.png", full_page=True)

    open_page(page, f"{app_url}/history?range=ALL")
    page.locator(".vega-embed").nth(1).wait_for(timeout=30_000)
    expect_no_exception(page)
    page.screenshot(path=SCREENSHOTS / "history.png", full_page=True)

    open_page(page, f"{app_url}/ranks?horizon=7d&top=100&range=ALL")
    page.get_by_text("Entered the top 100").wait_for(timeout=30_000)
    expect(page.locator("[data-testid='stDataFrame']")).to_have_count(4, timeout=30_000)
    expect_no_exception(page)
    page.screenshot(path=SCREENSHOTS / "ranks.png", full_page=True)
    # a download is the table's rows, as a file the browser saves
    with page.expect_download(timeout=30_000) as download:
        page.get_by_role("button", name="Download CSV").first.click()
    saved = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert download.value.suggested_filename == "cryptolytics-rank-climbers-7d.csv"
    assert saved[0] == "Coin,Rank now,Rank 7d ago,Places" and len(saved) == 11

    open_page(page, f"{app_url}/health")
    page.get_by_text("Source: replay").wait_for(timeout=30_000)
    page.locator(".vega-embed").first.wait_for(timeout=30_000)
    expect(page.locator("[data-testid='stDataFrame']")).to_have_count(2, timeout=30_000)
    expect_no_exception(page)
    page.screenshot(path=SCREENSHOTS / "health.png", full_page=True)


def test_a_hostile_coin_name_is_text_and_nothing_is_fetched_from_outside(
    browser_page, app_url: str
) -> None:
    """Every page that shows the hostile coin: its name stays text (no link, no image, no
    element from it) and the browser asks nothing of any host but 127.0.0.1."""
    from urllib.parse import urlsplit

    page = browser_page
    coin = hostile_id()
    requested: list[str] = []

    def record(request: object) -> None:
        requested.append(request.url)  # type: ignore[attr-defined]

    page.on("request", record)
    try:
        for view in (f"coin?coin={coin}&range=ALL", "", f"compare?coins={coin}"):
            open_page(page, f"{app_url}/{view}")
            page.locator(".vega-embed").first.wait_for(timeout=30_000)
            expect_no_exception(page)
            assert page.locator(f"img[src*='{OUTSIDE}'], a[href*='{OUTSIDE}']").count() == 0
            assert page.locator("a[href^='javascript:']").count() == 0
    finally:
        page.remove_listener("request", record)
    open_page(page, f"{app_url}/coin?coin={coin}&range=ALL")
    heading = page.get_by_role("heading", name="Evil")
    heading.first.wait_for(timeout=30_000)
    assert "[win](http:" in heading.first.inner_text()  # as typed, not a link
    page.screenshot(path=SCREENSHOTS / "hostile-coin.png", full_page=True)
    hosts = {urlsplit(url).hostname for url in requested if url.startswith(("http", "ws"))}
    assert hosts == {"127.0.0.1"}, [u for u in requested if "127.0.0.1" not in u]
