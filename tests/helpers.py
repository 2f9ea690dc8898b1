"""Helpers of the tests alone (what bench/ shares with them is in testkit/)."""

from __future__ import annotations

import contextlib
import gzip
import os
import subprocess
import sys
from pathlib import Path

from flows.core.settings import PROJECT_ROOT


def files_containing(needle: bytes, roots: list[Path]) -> list[str]:
    """Every file under `roots` holding `needle`, in its bytes or, for gzip files, in what
    they inflate to (the lake and quarantine are gzip)."""
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if not path.is_file():
                continue
            payload = path.read_bytes()
            if payload[:2] == b"\x1f\x8b":
                with contextlib.suppress(OSError, EOFError):
                    payload += gzip.decompress(payload)
            if needle in payload:
                found.append(str(path))
    return sorted(set(found))


# Every page's queries in a process of their own, as `streamlit run` starts the app: no
# Prefect server to reach (the address answers nothing), no Prefect imported at all.
APP_ALONE = """
import sys
from testkit.pages import page_queries
from streamlit_app import data
assert data.has_data()
for run in page_queries().values():
    run()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("prefect", "prefect_gcp"))
print("prefect modules:", loaded)
"""


def assert_app_stands_alone() -> None:
    """The settings come from this process's environment (the target's, a test's)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        "PREFECT_API_URL": "http://127.0.0.1:9/api",  # the discard port: nothing listens
        "GOOGLE_APPLICATION_CREDENTIALS": "",
    }
    done = subprocess.run(
        [sys.executable, "-c", APP_ALONE], env=env, cwd=PROJECT_ROOT,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "prefect modules: []" in done.stdout, done.stdout
