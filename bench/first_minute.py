"""A new user's first minutes, measured: clone, `make up`, and the time to each milestone.

    python -m bench.first_minute [--cache empty warm] [--restart] [--working-tree]

For each cache state it clones this repository into a temporary folder (`git clone` of the
committed HEAD; `--working-tree` copies the files git would see instead, to measure
uncommitted work), runs `make up` there on free ports with no API key (the replay) and no
CRYPTOLYTICS_ or PREFECT_API_URL setting of the caller's, and polls the real endpoints:

- installed:     `make install`'s last line ("install: .venv matches requirements.lock")
- ui:            the Prefect server's /api/health and the UI page answer
- app:           Streamlit's /_stcore/health answers
- first_data:    a pipeline run completed (Prefect API) and chromium shows the market page's
                 "Latest snapshot" caption (data, not the empty-state page)
- demo_history:  the demo backfill's flow run completed (Prefect API)

`empty` gives uv (and the pip that installs uv) an empty cache; `warm` a cache that already
holds the lock's packages (primed by an untimed install). `--restart` then stops the warm
stack (Ctrl-C) and starts `make up` again in the same clone: the venv is there, so install is
one line, and first_data is the first new tick after the restart, visible in the app.
Figures print as a table and go to bench/results/first_minute.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from flows.core.settings import PROJECT_ROOT
from testkit.browser import CHROMIUM, CHROMIUM_FLAGS

RESULTS = PROJECT_ROOT / "bench" / "results" / "first_minute.json"
WARM_CACHE = Path.home() / ".cache" / "cryptolytics-bench-uv"
TARGETS_S = {"empty": 90.0, "warm": 30.0, "restart": 20.0}  # fresh clone -> first data
MILESTONES = ("installed", "ui", "app", "first_data", "demo_history")
LATEST = re.compile(r"Latest snapshot: (\S+ \S+) UTC")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_clone(into: Path, *, working_tree: bool) -> Path:
    clone = into / "clone"
    if not working_tree:
        subprocess.run(["git", "clone", "--quiet", str(PROJECT_ROOT), str(clone)], check=True)
        return clone
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=PROJECT_ROOT, capture_output=True, check=True,
    ).stdout.split(b"\0")  # fmt: skip
    for name in filter(None, listed):
        source = PROJECT_ROOT / name.decode()
        if source.is_file():
            (clone / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name.decode())
    return clone


def clean_env(cache: Path) -> dict[str, str]:
    """A new user's shell: none of our settings, uv's and pip's caches where we say."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CRYPTOLYTICS_", "PREFECT_", "DBT_", "UV_"))
    }
    return {**env, "UV_CACHE_DIR": str(cache), "PIP_CACHE_DIR": str(cache / "pip")}


@dataclass
class Run:
    """One `make up`, its terminal lines (with seconds since start) and its milestones."""

    clone: Path
    env: dict[str, str]
    ui_port: int = field(default_factory=free_port)
    app_port: int = field(default_factory=free_port)
    lines: list[tuple[float, str]] = field(default_factory=list)
    reached: dict[str, float] = field(default_factory=dict)
    shown: str | None = None  # the latest snapshot the app showed at first data

    def start(self) -> None:
        self.started = time.monotonic()
        self.wall_start = datetime.now(tz=UTC)
        self.process = subprocess.Popen(
            ["make", "up", f"STACK_ARGS=--port {self.ui_port} --app-port {self.app_port}"],
            cwd=self.clone, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, text=True,
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic() - self.started, line.rstrip()))

    def mark(self, milestone: str) -> None:
        if milestone not in self.reached:
            self.reached[milestone] = time.monotonic() - self.started
            print(f"  {self.reached[milestone]:6.1f}s  {milestone}", flush=True)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}/api"

    def completed(self, flow_name: str) -> bool:
        """A run of `flow_name` that started since this `make up` began has completed."""
        body = {
            "flows": {"name": {"any_": [flow_name]}},
            "flow_runs": {
                "state": {"type": {"any_": ["COMPLETED"]}},
                "start_time": {"after_": self.wall_start.isoformat()},
            },
        }
        try:
            answer = httpx.post(f"{self.api}/flow_runs/filter", json=body, timeout=5)
        except httpx.HTTPError:
            return False
        return answer.status_code == 200 and bool(answer.json())


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def latest_snapshot_in_app(page: object, app_url: str) -> str | None:
    """What the market page says is its latest snapshot, as a browser renders it."""
    page.goto(app_url)  # type: ignore[attr-defined]
    caption = page.get_by_text("Latest snapshot:")  # type: ignore[attr-defined]
    try:
        caption.first.wait_for(timeout=20_000)
    except Exception:  # the page without data, or still loading: not yet
        return None
    found = LATEST.search(caption.first.inner_text())
    return found.group(1) if found else None


def watch(run: Run, page: object, timeout: float, *, before: str | None = None) -> None:
    """Poll until every milestone is reached (or the timeout); `before`: on a restart, the
    snapshot the app showed at the stop (first data is then a newer one)."""
    deadline = time.monotonic() + timeout
    app_url = f"http://127.0.0.1:{run.app_port}"
    while time.monotonic() < deadline and len(run.reached) < len(MILESTONES):
        if run.process.poll() is not None:
            raise SystemExit("`make up` exited:\n" + "\n".join(text for _, text in run.lines))
        if any("install: .venv matches" in text for _, text in run.lines):
            run.mark("installed")
        if "ui" not in run.reached and answers(f"{run.api}/health") and answers(run.api[:-4]):
            run.mark("ui")
        if "app" not in run.reached and answers(f"{app_url}/_stcore/health"):
            run.mark("app")
        if "first_data" not in run.reached and "app" in run.reached and run.completed("pipeline"):
            shown = latest_snapshot_in_app(page, app_url)
            if shown is not None and shown != before:
                run.mark("first_data")
                run.shown = shown
        if "demo_history" not in run.reached and run.completed("backfill"):
            run.mark("demo_history")
        if before is not None and "first_data" in run.reached:
            break  # a restart has no demo backfill to wait for
        time.sleep(0.5)


def measure(cache: str, args: argparse.Namespace, page: object) -> list[dict[str, object]]:
    results: list[dict[str, object]] = []
    folder = Path(tempfile.mkdtemp(prefix=f"first-minute-{cache}-"))
    try:
        if cache == "empty":
            cache_dir = folder / "uv-cache"
        else:
            cache_dir = WARM_CACHE
            primer = make_clone(folder / "primer", working_tree=args.working_tree)
            subprocess.run(
                ["make", "install"], cwd=primer, env=clean_env(cache_dir), check=True,
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            shutil.rmtree(primer)
        clone = make_clone(folder, working_tree=args.working_tree)
        print(f"{cache} cache: make up in {clone}", flush=True)
        run = Run(clone, clean_env(cache_dir))
        run.start()
        try:
            watch(run, page, args.timeout)
            shown = run.shown
        finally:
            run.stop()
        results.append(summary(cache, run))
        if cache == "warm" and args.restart:
            print("restart: make up again in the same clone", flush=True)
            again = Run(clone, clean_env(cache_dir))
            again.start()
            try:
                watch(again, page, args.timeout, before=shown)
            finally:
                again.stop()
            results.append(summary("restart", again))
    finally:
        if args.keep:
            print(f"kept: {folder} (its logs/ has every part's log)")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return results


def summary(name: str, run: Run) -> dict[str, object]:
    return {
        "run": name,
        "target_first_data_s": TARGETS_S[name],
        **{m: round(run.reached[m], 1) if m in run.reached else None for m in MILESTONES},
        "terminal": [f"{at:6.1f}s  {text}" for at, text in run.lines][:40],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", nargs="+", choices=("empty", "warm"), default=["empty", "warm"])
    parser.add_argument("--restart", action="store_true", help="also restart the warm stack")
    parser.add_argument("--working-tree", action="store_true", help="copy, not git clone")
    parser.add_argument("--keep", action="store_true", help="keep the clones (logs/)")
    parser.add_argument("--timeout", type=float, default=600, help="per run, seconds")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        rows = [row for cache in args.cache for row in measure(cache, args, page)]
        browser.close()
    print(table(rows))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"measured_at": datetime.now(tz=UTC).isoformat(),
                                   "runs": rows}, indent=2) + "\n")  # fmt: skip
    print(f"written: {RESULTS.relative_to(PROJECT_ROOT)}")


def table(rows: list[dict[str, object]]) -> str:
    def cell(value: object) -> str:
        return "-" if value is None else f"{value:.1f} s"

    lines = [
        "| run | " + " | ".join(MILESTONES) + " | target (first data) | |",
        "|---|" + "---|" * (len(MILESTONES) + 2),
    ]
    for row in rows:
        first, target = row["first_data"], row["target_first_data_s"]
        verdict = "MISS" if first is None or float(first) > float(target) else "PASS"  # type: ignore[arg-type]
        lines.append(
            f"| {row['run']} | " + " | ".join(cell(row[m]) for m in MILESTONES)
            + f" | < {target:.0f} s | {verdict} |"
        )  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
