"""One writer at a time per warehouse, whoever starts it (schedule, CLI, backfill, tests).

The deployment's concurrency limit covers scheduled runs; this lock also covers ad-hoc
runs from the CLI. It is an OS file lock, so a killed run releases it at once. Every flow
that writes the warehouse or the serving copies takes it (`pipeline`, `load`, `transform`,
`backfill`'s load and build, `audit`); it is re-entrant within a thread, so a flow that
holds it can call another that takes it (another thread of the same process waits)."""

from __future__ import annotations

import fcntl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

# (lock file, thread) -> (open handle, depth) for the locks this process holds
_held: dict[tuple[Path, int], tuple[IO[str], int]] = {}
_guard = threading.Lock()


class PipelineBusy(RuntimeError):
    """Another pipeline run held the lock for longer than we were willing to wait."""


@contextmanager
def exclusive_run(
    lock_path: Path, *, timeout_seconds: float, poll_seconds: float = 0.2
) -> Iterator[float]:
    """Hold an exclusive lock on `lock_path`; yields the seconds spent waiting for it."""
    key = (lock_path.resolve(), threading.get_ident())
    with _guard:
        if key in _held:  # this process holds it already: go on, release at the outermost
            handle, depth = _held[key]
            _held[key] = (handle, depth + 1)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield 0.0
        finally:
            with _guard:
                handle, depth = _held[key]
                _held[key] = (handle, depth - 1)
        return
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
        with _guard:
            _held[key] = (handle, 1)
        try:
            yield time.monotonic() - started
        finally:
            with _guard:
                del _held[key]
            fcntl.flock(handle, fcntl.LOCK_UN)
