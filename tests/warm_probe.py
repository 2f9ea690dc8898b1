"""A flow for the worker tests: it writes its process id, then sleeps (to be cancelled
or killed while it runs)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from prefect import flow, get_run_logger


@flow(name="warm-probe")
def sleepy(pid_file: str, seconds: float = 120) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)
    get_run_logger().info("probe done")  # a run's last words must reach the API too
