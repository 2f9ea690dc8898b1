"""Soak: many accelerated pipeline ticks against a faulty API while the app's queries run.

    make soak                       # 1,000 ticks of 500 assets (about 95 minutes here)
    make soak SOAK_ARGS="--ticks 200 --coins 2000"

Everything is real and on 127.0.0.1: a Prefect server of its own, the real `pipeline` flow
in live mode against an HTTP server that serves the bundled replay market data (real
prices, one replay day per snapshot, stamped with the time it is served so they pass the
live checks) and injects faults per request: 5 % HTTP errors (500/502/503/429), 1 %
responses slower than the client's timeout and 0.5 % truncated bodies. About 1 % of the
ticks run in a separate process that is SIGKILLed at a random stage (testkit/crash_tick.py).
All other ticks run one after another in one long-lived process (what a warm process does), so
its memory and open file descriptors show any leak. Meanwhile a reader process runs every
page's queries of the app's data module from several threads, with its cache off, and
checks that the latest ranking is always whole and matches the latest snapshot.

At the end the warehouse must equal the lake snapshot by snapshot (the fault-injection
test's check). Prints the figures and writes bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from bench.app_queries import BENCH_DIR
from bench.suite import prefect_server, workspace_env
from flows.core.settings import PROJECT_ROOT

HTTP_TIMEOUT_SECONDS = 1.0
ERROR_STATUSES = (500, 502, 503, 429)


def process_figures() -> dict[str, float]:
    """This process's RSS now and at its peak (MB), and its open file descriptors."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {
        "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
        "peak_mb": int(status["VmHWM"].split()[0]) / 1024,
        "fds": len(os.listdir("/proc/self/fd")),
    }


class FaultyApi:
    """CoinCap's `/assets` on 127.0.0.1: real replay data, live timestamps, injected faults."""

    def __init__(self, rng: random.Random, error_rate: float, timeout_rate: float, bad_rate: float):
        from flows.replay.dataset import shared_dataset

        self.dataset = shared_dataset()
        self.rng, self.lock = rng, threading.Lock()
        self.rates = {"error": error_rate, "timeout": timeout_rate, "bad": bad_rate}
        self.injected: Counter[str] = Counter()
        self.served = 0
        self.last_ms = 0

    def fault(self) -> str | None:
        with self.lock:
            draw = self.rng.random()
            for kind, rate in self.rates.items():
                if draw < rate:
                    self.injected[kind] += 1
                    return kind
                draw -= rate
            return None

    def body(self, limit: int, offset: int) -> bytes:
        with self.lock:
            days = self.dataset.days
            day = days[self.served % len(days)]
            self.served += 1
            self.last_ms = max(int(time.time() * 1000), self.last_ms + 1)
            stamp = self.last_ms
        rows = self.dataset.assets(day, limit=limit, offset=offset)
        from flows.replay.server import assets_body

        body = json.loads(assets_body(day, rows))
        return json.dumps({**body, "timestamp": stamp}).encode()

    @contextmanager
    def serving(self) -> Iterator[str]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                fault = api.fault()
                if fault == "error":
                    self._send(api.rng.choice(ERROR_STATUSES), b'{"error": "injected"}')
                    return
                if fault == "timeout":
                    time.sleep(HTTP_TIMEOUT_SECONDS + 0.5)
                limit = int(query.get("limit", ["100"])[0])
                body = api.body(limit, int(query.get("offset", ["0"])[0]))
                self._send(HTTPStatus.OK, body[: len(body) // 2] if fault == "bad" else body)

            def _send(self, status: int, payload: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): that was the point

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/v3"
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


def tick_worker(connection: Connection, env: dict[str, str]) -> None:
    """The long-lived process: one `pipeline` flow run per request, figures back."""
    os.environ.update(env)
    from flows.pipeline import pipeline

    while connection.recv() == "tick":
        state = pipeline(return_state=True)
        outcome: dict[str, Any] = {"completed": state.is_completed(), "retries": 0}
        if state.is_completed():
            outcome["retries"] = state.result().extracted.retries
        else:
            outcome["message"] = str(state.message)
        connection.send({**outcome, **process_figures()})


READER_THREADS = 4


def reader_main(stop_file: Path, report_file: Path) -> None:
    """The app's side: every page's queries in a loop from several threads, cache off."""
    from streamlit_app import data
    from testkit.pages import page_queries

    # st.cache_data outside `streamlit run` says so on every call
    logging.getLogger("streamlit.runtime.caching.cache_data_api").setLevel(logging.ERROR)

    pages = page_queries()
    reads: Counter[str] = Counter()
    errors: list[str] = []
    partial: list[str] = []
    whole = """
        select (select max(snapshot_at) from prod.mart_latest_ranking) as ranking_at,
               (select count(*) from prod.mart_latest_ranking) as ranked,
               (select max(snapshot_at) from prod.mart_market_overview) as overview_at,
               (select arg_max(asset_count, snapshot_at) from prod.mart_market_overview) as assets
    """

    def loop() -> None:
        while not stop_file.exists():
            try:
                for page, run in pages.items():
                    run()
                    reads[page] += 1
                row = data.reader().query(whole, {}).iloc[0]
                if row["ranking_at"] != row["overview_at"] or row["ranked"] != row["assets"]:
                    partial.append(str(row.to_dict()))
            except Exception:
                errors.append(traceback.format_exc())
                time.sleep(0.5)

    threads = [threading.Thread(target=loop) for _ in range(READER_THREADS)]
    for thread in threads:
        thread.start()
    time.sleep(30)  # warmed up: connections open, modules loaded
    start = process_figures()
    for thread in threads:
        thread.join()
    report = {
        "threads": READER_THREADS,
        "page_reads": sum(reads.values()),
        "errors": len(errors),
        "first_errors": errors[:3],
        "partial_reads": len(partial),
        "first_partial": partial[:3],
        "start": start,
        "end": process_figures(),
    }
    report_file.write_text(json.dumps(report))


def verify(env: dict[str, str]) -> dict[str, int]:
    """The warehouse equals the lake, snapshot by snapshot (raises if not)."""
    from flows.adapters.lake import Lake
    from flows.core.settings import Settings
    from testkit.pipeline import assert_warehouse_equals_lake, lake_snapshots

    os.environ.update(env)
    settings = Settings()
    snapshots = assert_warehouse_equals_lake(settings)
    lake_rows = sum(rows for rows, _, _ in lake_snapshots(Lake(settings.lake_url)).values())
    import duckdb

    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        (warehouse_rows,) = con.execute("select count(*) from raw.coincap_assets").fetchone()
        (fact_rows,) = con.execute("select count(*) from prod.facts_coins").fetchone()
    quarantined = len(list(Path(settings.lake_url, "quarantine").rglob("*.reason.json")))
    return {
        "snapshots": snapshots,
        "lake_rows": lake_rows,
        "warehouse_rows": warehouse_rows,
        "fact_rows": fact_rows,
        "quarantine_files": quarantined,
    }


def soak(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from testkit import crash_tick
    from testkit.crash_tick import KILL_POINTS

    rng = random.Random(args.seed)
    api = FaultyApi(random.Random(args.seed + 1), args.error_rate, args.timeout_rate, 0.005)
    with prefect_server(root) as api_url, api.serving() as base_url:
        env = {
            **workspace_env(root, api_url),  # the benchmarks' workspace, in live mode
            "PREFECT_HOME": str(root / "prefect"),
            "CRYPTOLYTICS_SOURCE": "coincap",
            "CRYPTOLYTICS_COINCAP_API_KEY": "soak-key",
            "CRYPTOLYTICS_COINCAP_BASE_URL": base_url,
            "CRYPTOLYTICS_ASSET_LIMIT": str(args.coins),
            "CRYPTOLYTICS_FETCH_RATES": "false",  # the faulty API serves `/assets` only
            "CRYPTOLYTICS_HTTP_TIMEOUT_SECONDS": str(HTTP_TIMEOUT_SECONDS),
            "CRYPTOLYTICS_HTTP_MAX_ATTEMPTS": "4",
            "CRYPTOLYTICS_HTTP_BACKOFF_SECONDS": "0.05",
            "CRYPTOLYTICS_APP_CACHE_TTL_SECONDS": "0",
        }
        os.environ.update(env)  # the forkserver imports Prefect with these
        # its children re-import this module as __mp_main__: Python warns, harmlessly
        os.environ["PYTHONWARNINGS"] = "ignore::RuntimeWarning:runpy"
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([*crash_tick.PRELOAD, "bench.soak"])
        ours, theirs = context.Pipe()
        worker = context.Process(target=tick_worker, args=(theirs, env))
        worker.start()

        counts: Counter[str] = Counter()
        figures: list[dict[str, Any]] = []
        reader = None
        started = time.perf_counter()
        for n in range(args.ticks):
            counts["attempted"] += 1
            # a kill is always followed by a normal tick (the one that recovers), so not last
            if 0 < n < args.ticks - 1 and rng.random() < args.kill_rate:
                stage, longest = rng.choice(KILL_POINTS)
                victim = context.Process(
                    target=crash_tick.run_tick,
                    args=(env, str(root / "stage"), stage, rng.uniform(0, longest)),
                )
                victim.start()
                victim.join(300)
                counts["killed" if victim.exitcode == -9 else "kill missed"] += 1
                continue
            ours.send("tick")
            outcome = ours.recv()
            figures.append(outcome)
            if outcome["completed"]:
                counts["succeeded"] += 1
                counts["retried"] += outcome["retries"] > 0
            elif "Snapshot rejected" in outcome["message"] or "kept in" in outcome["message"]:
                counts["quarantined"] += 1
            else:
                counts["failed"] += 1
                print(f"tick {n} failed: {outcome['message'][:200]}", flush=True)
            if n == 0:  # a first snapshot is published: the app has something to read
                reader = subprocess.Popen(
                    [sys.executable, "-m", "bench.soak", "--reader", str(root)],
                    env={**os.environ, **env},
                    cwd=PROJECT_ROOT,
                )
            if (n + 1) % 50 == 0:
                print(
                    f"{n + 1} ticks in {time.perf_counter() - started:.0f}s: {dict(counts)}; "
                    f"worker RSS {outcome['rss_mb']:.0f} MB, {outcome['fds']} fds",
                    flush=True,
                )
        seconds = time.perf_counter() - started
        ours.send("stop")
        worker.join(60)
        (root / "stop-reader").touch()
        assert reader is not None
        reader.wait(600)
        reader_report = json.loads((root / "reader.json").read_text())
    after = verify(env)
    warm = figures[min(10, len(figures) - 1)]
    return {
        "ticks": args.ticks,
        "coins": args.coins,
        "seconds": round(seconds),
        "counts": dict(counts),
        "faults_injected": dict(api.injected),
        "requests_served": api.served,
        "worker": {
            "after_10_ticks": {k: round(warm[k], 1) for k in ("rss_mb", "fds")},
            "end": {k: round(figures[-1][k], 1) for k in ("rss_mb", "peak_mb", "fds")},
        },
        "reader": reader_report,
        "warehouse": after,
    }


def report(results: dict[str, Any]) -> None:
    counts, worker, reader, stored = (
        results["counts"],
        results["worker"],
        results["reader"],
        results["warehouse"],
    )
    print(f"\nSoak: {results['ticks']} ticks, {results['coins']} assets, {results['seconds']} s")
    print(f"  faults injected per request: {results['faults_injected']}")
    for key in ("attempted", "succeeded", "retried", "quarantined", "killed", "failed"):
        print(f"  {key:<12} {counts.get(key, 0):>6}")
    print(
        f"  rows: lake {stored['lake_rows']:,} = warehouse {stored['warehouse_rows']:,} "
        f"= facts {stored['fact_rows']:,} over {stored['snapshots']:,} snapshots; "
        f"{stored['quarantine_files']} bodies in quarantine"
    )
    print(
        f"  tick process: RSS {worker['after_10_ticks']['rss_mb']} MB after 10 ticks -> "
        f"{worker['end']['rss_mb']} MB at the end (peak {worker['end']['peak_mb']} MB); "
        f"open fds {worker['after_10_ticks']['fds']} -> {worker['end']['fds']}"
    )
    print(
        f"  app reader ({reader['threads']} threads): {reader['page_reads']:,} page reads, "
        f"{reader['errors']} errors, {reader['partial_reads']} partial reads; RSS "
        f"{reader['start']['rss_mb']:.0f} -> {reader['end']['rss_mb']:.0f} MB, "
        f"fds {reader['start']['fds']} -> {reader['end']['fds']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=1000)
    # 500 keeps the soak near 1.5 hours on two cores; the faults are per request, so their
    # rate does not depend on it (make bench measures ticks of 2,000)
    parser.add_argument("--coins", type=int, default=500)
    parser.add_argument("--error-rate", type=float, default=0.05)
    parser.add_argument("--timeout-rate", type=float, default=0.01)
    parser.add_argument("--kill-rate", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--reader", type=Path, help=argparse.SUPPRESS)  # the reader process
    args = parser.parse_args()
    if args.reader:
        reader_main(args.reader / "stop-reader", args.reader / "reader.json")
        return
    with tempfile.TemporaryDirectory(prefix="cryptolytics-soak-") as tmp:
        results = soak(args, Path(tmp))
    report(results)
    out = BENCH_DIR / "results" / "soak.json"
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwritten: {out.relative_to(PROJECT_ROOT)}")
    ok = (
        results["reader"]["errors"] == 0
        and results["reader"]["partial_reads"] == 0
        and results["warehouse"]["lake_rows"] == results["warehouse"]["warehouse_rows"]
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
