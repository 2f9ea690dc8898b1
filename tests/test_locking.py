"""Two pipeline runs never write at once: the second waits, or gives up with a clear error."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.locking import PipelineBusy, exclusive_run

HOLD_LOCK = """
import sys, time
from pathlib import Path
from flows.locking import exclusive_run
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
