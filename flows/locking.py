"""One pipeline run at a time per warehouse, whoever starts it (schedule, CLI, tests).

The deployment's concurrency limit covers scheduled runs; this lock also covers ad-hoc
runs from the CLI. It is an OS file lock, so a killed run releases it at once."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PipelineBusy(RuntimeError):
    """Another pipeline run held the lock for longer than we were willing to wait."""


@contextmanager
def exclusive_run(
    lock_path: Path, *, timeout_seconds: float, poll_seconds: float = 0.2
) -> Iterator[float]:
    """Hold an exclusive lock on `lock_path`; yields the seconds spent waiting for it."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(lock_path, "a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if waited >= timeout_seconds:
                    raise PipelineBusy(
                        f"another pipeline run holds {lock_path} (waited {waited:.0f}s)"
                    ) from None
                time.sleep(poll_seconds)
        try:
            yield time.monotonic() - started
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
