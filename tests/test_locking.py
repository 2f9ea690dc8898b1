"""Two pipeline runs never write at once: the second waits, or gives up with a clear error."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.runtime.locking import PipelineBusy, exclusive_run

pytestmark = pytest.mark.unit

HOLD_LOCK = """
import sys, time
from pathlib import Path
from flows.runtime.locking import exclusive_run
with exclusive_run(Path(sys.argv[1]), timeout_seconds=5):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_lock_in_another_process(lock: Path, seconds: float) -> subprocess.Popen[str]:
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "locked"
    return process


def test_second_run_waits_for_the_first(tmp_path: Path) -> None:
    lock = tmp_path / "pipeline.lock"
    holder = hold_lock_in_another_process(lock, 1.0)
    started = time.monotonic()
    with exclusive_run(lock, timeout_seconds=30) as waited:
        pass
    holder.wait()
    assert waited >= 0.5  # we got in only once the other run let go
    assert time.monotonic() - started >= 0.5


def test_second_run_gives_up_after_the_timeout(tmp_path: Path) -> None:
    lock = tmp_path / "pipeline.lock"
    holder = hold_lock_in_another_process(lock, 5.0)
    try:
        with (
            pytest.raises(PipelineBusy, match="another pipeline run holds"),
            exclusive_run(lock, timeout_seconds=0.3),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_run_releases_the_lock_at_once(tmp_path: Path) -> None:
    lock = tmp_path / "pipeline.lock"
    holder = hold_lock_in_another_process(lock, 60)
    holder.kill()
    holder.wait()
    with exclusive_run(lock, timeout_seconds=2) as waited:
        assert waited < 1


def test_a_flow_holding_the_lock_can_call_another_that_takes_it(tmp_path: Path) -> None:
    """backfill holds the lock and calls the load and transform flows, which take it too."""
    lock = tmp_path / "pipeline.lock"
    with exclusive_run(lock, timeout_seconds=1):
        with exclusive_run(lock, timeout_seconds=1) as waited:
            assert waited == 0.0
        # still held by us after the inner one let go: another process cannot get it
        probe = subprocess.run(
            [sys.executable, "-c", HOLD_LOCK.replace("timeout_seconds=5", "timeout_seconds=0.2"),
             str(lock), "0"],
            capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
        assert "PipelineBusy" in probe.stderr
    with exclusive_run(lock, timeout_seconds=1) as waited:  # and released at the outermost
        assert waited < 1


def test_another_thread_of_the_same_process_waits(tmp_path: Path) -> None:
    import threading

    lock, order = tmp_path / "pipeline.lock", []

    def second() -> None:
        with exclusive_run(lock, timeout_seconds=5):
            order.append("second")

    with exclusive_run(lock, timeout_seconds=1):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)
        order.append("first done")
    thread.join()
    assert order == ["first done", "second"]
