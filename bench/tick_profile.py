"""Where a warm tick's time goes at a given history size: each dbt node and each publish step.

    python -m bench.tick_profile --days 90 [--ticks 5] [--workspace DIR]

The suite (bench/suite.py) times the stages; this says which nodes and which tables make
them grow with history. The same workspace as the suite's (generated history, live-shaped
ticks against bench/live_like.py, a Prefect server of its own); it prints the median of
`--ticks` warm ticks for every dbt node and every table the publish step catches up.
`--workspace DIR` keeps the prepared history there and reuses it on the next run (preparing
90 days takes about 5 minutes), so a change can be profiled before and after on the same data
(each run adds its ticks to it). A change to how a model stores its rows reaches a reused
workspace only by a full refresh of that model; a new workspace gets it from the start.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def timing(
    module: Any, name: str, key: Callable[..., str], into: dict[str, list[float]]
) -> Iterator[None]:
    """Replace module.name by a wrapper adding its wall time under key(*args) to `into`."""
    original = getattr(module, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            into[key(*args, **kwargs)].append(time.perf_counter() - started)

    setattr(module, name, timed)
    try:
        yield
    finally:
        setattr(module, name, original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--workspace", type=Path, help="keep and reuse the history here")
    args = parser.parse_args()

    from bench.live_like import serve_live_like
    from bench.suite import COINS, now_ms, prefect_server, prepare, workspace_env

    with contextlib.ExitStack() as stack:
        if args.workspace is None:
            base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cryptolytics-")))
        else:
            base = args.workspace.resolve()
            base.mkdir(parents=True, exist_ok=True)
        api_url = stack.enter_context(prefect_server(base))
        live_url = stack.enter_context(serve_live_like(0, COINS))
        root = base / f"history-{args.days}d"
        env = workspace_env(root, api_url, live_url)
        if not (root / "serving" / "current").exists():  # not prepared (or half): prepare it
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            prepare(root, env, args.days, end_ms=now_ms() - 300_000)
        os.environ.update(env)
        profile(args.ticks)


def profile(ticks: int) -> None:
    from flows.adapters import dbt_runner, serving, targets
    from flows.pipeline import pipeline

    nodes: dict[str, list[float]] = defaultdict(list)
    steps: dict[str, list[float]] = defaultdict(list)
    original_build = dbt_runner.WarmDbt.build

    def build(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original_build(self, *args, **kwargs)
        for node in result.nodes:
            nodes[node.node].append(node.seconds)
        steps["dbt: the whole build"].append(result.build_seconds)
        return result

    pipeline()  # the first tick of the process parses dbt: not timed
    dbt_runner.WarmDbt.build = build  # type: ignore[method-assign]
    try:
        with (
            timing(serving, "_sync", lambda con, table, **_: f"publish {table.name}", steps),
            timing(serving, "_disagreement", lambda con: "publish: the row-count check", steps),
            timing(targets, "publish", lambda *a, **k: "publish: all of it", steps),
        ):
            for _ in range(ticks):
                pipeline()
    finally:
        dbt_runner.WarmDbt.build = original_build  # type: ignore[method-assign]

    def show(title: str, figures: dict[str, list[float]]) -> None:
        print(f"\n{title} (median of {ticks} ticks, ms)")
        for name, values in sorted(figures.items(), key=lambda kv: -statistics.median(kv[1])):
            print(f"  {statistics.median(values) * 1000:>8.1f}  {name}")

    show("dbt nodes", nodes)
    show("steps", steps)


if __name__ == "__main__":
    main()
