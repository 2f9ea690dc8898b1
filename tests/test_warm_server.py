"""The warm fork server on its own (no Prefect server): a request it cannot use is refused
and the server goes on; a run whose interpreter-level environment differs is sent back
cold before any fork."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.core.settings import PROJECT_ROOT, Settings
from flows.runtime.warm_launch import HEADER

pytestmark = pytest.mark.integration


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[tuple[Path, int]]:
    path = tmp_path / "server.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.runtime.warm_server", str(path)], cwd=PROJECT_ROOT
    )
    deadline = time.monotonic() + 180
    while not path.exists():
        assert process.poll() is None and time.monotonic() < deadline, "server not ready"
        time.sleep(0.2)
    yield path, process.pid
    process.terminate()
    assert process.wait(30) == 0


def ask(path: Path, payload: bytes, fds: list[int] | None = None) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.connect(str(path))
        connection.settimeout(10)
        if fds is None:
            connection.sendall(payload)
        else:
            socket.send_fds(connection, [payload], fds)
        try:
            return connection.makefile("r").readline().strip()
        except OSError:
            return ""


def request(**fields: object) -> bytes:
    body = json.dumps({"args": [], "env": dict(os.environ), "cwd": "/", **fields}).encode()
    return HEADER.pack(len(body)) + body


@pytest.mark.parametrize(
    ("hostile", "with_stdio"),
    [
        (b"\x07" * 64, False),  # no file descriptors, no header
        (HEADER.pack(2**31) + b"{}", True),  # a length past the cap
        (HEADER.pack(5) + b"{nope", True),  # not JSON
        (request(env=5), True),  # env not a mapping
        (request(args=["--x", 3]), True),  # args not all strings
    ],
    ids=["no-stdio", "too-long", "not-json", "env-not-a-mapping", "args-not-strings"],
)
def test_a_request_it_cannot_use_is_refused_and_the_server_goes_on(
    server: tuple[Path, int], hostile: bytes, with_stdio: bool
) -> None:
    path, pid = server
    open_before = len(os.listdir(f"/proc/{pid}/fd"))
    assert ask(path, hostile, [0, 1, 2] if with_stdio else None) == ""  # closed, no fork
    env = {**os.environ, "PYTHONPATH": "/elsewhere"}
    assert ask(path, request(env=env), [0, 1, 2]) == "cold"  # still serving
    deadline = time.monotonic() + 5  # the server closes its side just after answering
    while len(os.listdir(f"/proc/{pid}/fd")) != open_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(os.listdir(f"/proc/{pid}/fd")) == open_before  # the stdio it got: closed


def test_after_our_code_changes_runs_go_cold_and_the_server_starts_again(
    server: tuple[Path, int],
) -> None:
    """A warm process would run the old code: the next request is sent back cold, and the
    server starts itself again (same pid, a new socket) with the new code."""
    path, _ = server
    before = path.stat().st_ino
    added = PROJECT_ROOT / "flows" / "_warm_server_test_probe.py"  # any change to our code
    try:
        added.write_text('"""Written by tests/test_warm_server.py; safe to delete."""\n')
        assert ask(path, request(), [0, 1, 2]) == "cold"  # before any fork
        deadline = time.monotonic() + 180
        while not (path.exists() and path.stat().st_ino != before):
            assert time.monotonic() < deadline, "the server did not start again"
            time.sleep(0.2)
    finally:
        added.unlink(missing_ok=True)
