"""Alerts on a real Prefect server: the automations `python -m blocks.register` creates fire
on real pipeline runs and POST to a webhook on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from blocks.alerts import DEAD_LETTER, FAILING, STALE, register_alerts
from flows.core.settings import Settings
from flows.pipeline import pipeline

pytestmark = [
    pytest.mark.integration,
    pytest.mark.prefect,
    pytest.mark.usefixtures("prefect_server"),
]


@pytest.fixture
def no_automations_left() -> Iterator[None]:
    """The server is shared by the session: leave no automation firing behind."""
    yield
    with get_client(sync_client=True) as client:
        for automation in client.read_automations():
            client.delete_automation(automation.id)


def wait_for(received: list[dict], subject_part: str, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for message in received:
            if subject_part in message["subject"]:
                return message
        time.sleep(0.5)
    raise AssertionError(f"no alert with {subject_part!r} in {seconds}s; got {received}")


@pytest.mark.usefixtures("no_automations_left")
def test_two_failed_runs_and_a_stale_pipeline_alert_the_webhook(
    settings: Settings, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[dict] = []

    def record(request: Request) -> Response:
        received.append(json.loads(request.get_data()))
        return Response("ok")

    httpserver.expect_request("/hooks/alerts", method="POST").respond_with_handler(record)
    httpserver.expect_request("/v3/assets").respond_with_data("down", status=503)
    monkeypatch.setenv("CRYPTOLYTICS_ALERT_WEBHOOK_URL", httpserver.url_for("/hooks/alerts"))
    monkeypatch.setenv("CRYPTOLYTICS_ALERT_STALE_AFTER", "PT10S")  # Prefect's minimum
    monkeypatch.setenv("CRYPTOLYTICS_SOURCE", "coincap")
    monkeypatch.setenv("CRYPTOLYTICS_COINCAP_API_KEY", "test-key")
    monkeypatch.setenv("CRYPTOLYTICS_COINCAP_BASE_URL", httpserver.url_for("/v3"))
    monkeypatch.setenv("CRYPTOLYTICS_HTTP_MAX_ATTEMPTS", "1")

    first = register_alerts(Settings())
    again = register_alerts(Settings())  # idempotent: updated in place, nothing doubled
    names = (STALE, FAILING, DEAD_LETTER)
    assert first[1:] == [f"automation {name!r}: created" for name in names]
    assert again[1:] == [f"automation {name!r}: updated" for name in names]
    with get_client(sync_client=True) as client:
        assert sorted(a.name for a in client.read_automations()) == sorted(names)

    assert pipeline(return_state=True).is_failed()
    time.sleep(1)
    assert not [m for m in received if "failed twice" in m["subject"]]  # one failure: quiet
    second = pipeline(return_state=True)
    assert second.is_failed()

    failing = wait_for(received, "failed twice in a row", 60)
    assert failing["source"] == "cryptolytics"
    assert second.state_details.flow_run_id and "503" in failing["body"]
    stale = wait_for(received, "no pipeline run completed in 10 seconds", 60)
    assert "going stale" in stale["body"]
    assert "test-key" not in json.dumps(received)


@pytest.mark.usefixtures("no_automations_left")
def test_a_run_that_dead_letters_a_file_alerts_the_webhook(
    settings: Settings, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zero-length lake file: the run completes without it, and the dead-letter
    automation tells someone, naming the file."""
    received: list[dict] = []

    def record(request: Request) -> Response:
        received.append(json.loads(request.get_data()))
        return Response("ok")

    httpserver.expect_request("/hooks/alerts", method="POST").respond_with_handler(record)
    monkeypatch.setenv("CRYPTOLYTICS_ALERT_WEBHOOK_URL", httpserver.url_for("/hooks/alerts"))
    register_alerts(Settings())
    pipeline()
    empty = Path(settings.lake_url) / "raw/replay/assets/date=2020-12-31/1609372800000.json.gz"
    empty.parent.mkdir(parents=True)
    empty.write_bytes(b"")
    state = pipeline(return_state=True)
    assert state.is_completed()
    alert = wait_for(received, "a stage refused data", 60)
    assert "1 lake file(s) moved to quarantine" in alert["body"]
    assert "1609372800000.json.gz" in alert["body"]


def test_without_a_webhook_no_alerts_are_registered(settings: Settings) -> None:
    assert register_alerts(settings) == [
        "alerts: skipped (CRYPTOLYTICS_ALERT_WEBHOOK_URL is not set)"
    ]
