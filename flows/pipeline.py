"""pipeline: extract -> load -> transform, one run at a time, with a summary in the Prefect UI.

    python -m flows.pipeline [--asset-limit N]

One flow run whose tasks are the steps of the `extract`, `load` and `transform` flows (each
Prefect flow run costs about a second of engine overhead here, so the tick is not three
subflows). Load and transform run even when extract fails, so files left by an earlier crash are
still caught up; the run then fails with extract's error.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.adapters.source import resolve_source
from flows.adapters.targets import Target, resolve_target
from flows.core.loading import HistoryReport, LoadResult
from flows.core.queries import MoverFilter
from flows.core.settings import (
    DEAD_LETTER_EVENT,
    TICK_TIMEOUT_SECONDS,
    get_settings,
)
from flows.core.text import plain
from flows.extract import ExtractResult, extract_snapshot
from flows.load import load_pending_files
from flows.runtime.cli import finish
from flows.runtime.locking import exclusive_run
from flows.runtime.steps import warehouse_step
from flows.transform import TransformResult, build_and_publish


@dataclass(frozen=True)
class PipelineResult:
    extracted: ExtractResult
    loaded: LoadResult
    transformed: TransformResult
    report: HistoryReport
    seconds: dict[str, float]


@warehouse_step
def read_history_report(target: Target, mover_filter: MoverFilter) -> HistoryReport:
    with target.open_warehouse() as warehouse:
        return warehouse.history_report(5, mover_filter)


def summary_markdown(result: PipelineResult) -> str:
    """The run summary shown in the Prefect UI."""
    extracted, report = result.extracted, result.report
    banner = (
        "> **Replay**: bundled real 2021 market data (CoinGecko), not live prices.\n\n"
        if extracted.source == "replay"
        else ""
    )
    timings = " · ".join(f"{stage} {seconds:.2f}s" for stage, seconds in result.seconds.items())
    return (
        f"# Cryptolytics pipeline run\n\n{banner}"
        f"| | |\n|---|---|\n"
        f"| Snapshot | {extracted.snapshot_at} ({extracted.source}) |\n"
        f"| Assets fetched | {extracted.asset_count:,} "
        f"({extracted.requests} request(s), {extracted.retries} retr(ies)) |\n"
        f"| Lake file | `{extracted.lake_path}` "
        f"({'new' if extracted.created else 'already there'}) |\n"
        + rates_row(extracted)
        + f"| Rows loaded | {result.loaded.rows_loaded:,} "
        f"from {result.loaded.files_loaded} file(s) |\n"
        f"| Dead letters | {dead_letter_summary(result)} |\n"
        f"| dbt | {result.transformed.models_built} models built, "
        f"{result.transformed.tests_passed} tests passed |\n"
        f"| History | {report.facts_rows:,} fact rows over {report.snapshots:,} snapshots |\n"
        f"| Time | {timings} |\n"
    )


def rates_row(extracted: ExtractResult) -> str:
    """The tick's `/rates` (live ticks only): its lake file, or why there is none."""
    if extracted.rates_path:
        return f"| Rates | `{extracted.rates_path}` |\n"
    if extracted.rates_note:
        return f"| Rates | none this tick: {plain(extracted.rates_note)} |\n"
    return ""


def dead_letter_summary(result: PipelineResult) -> str:
    files = {**result.loaded.dead_lettered, **result.transformed.dead_lettered}
    parts = []
    if files:
        parts.append(
            f"{len(files)} lake file(s) moved to quarantine: "
            + ", ".join(f"`{path}`" for path in list(files)[:5])
        )
    if result.loaded.rows_rejected:
        parts.append(f"{result.loaded.rows_rejected} asset(s) left out by validation")
    return "; ".join(parts) or "none"


def movers_table(report: HistoryReport) -> list[dict[str, object]]:
    """Top gainers then top losers over 24h, rounded for reading."""
    rows = []
    for kind, movers in (("gainer", report.gainers), ("loser", report.losers)):
        for mover in movers:
            rows.append(
                {
                    "kind": kind,
                    "rank": mover["rank"],
                    # the Prefect UI renders a string cell as Markdown: the name is data
                    "coin": plain(f"{mover['name']} ({mover['symbol']})"),
                    "price_usd": f"{mover['price_usd']:.6g}",
                    "change_24h_pct": round(float(str(mover["change_24h_pct"])), 2),
                    "volume_usd_24h": f"{mover['volume_usd_24hr'] or 0:,.0f}",
                }
            )
    return rows


def announce_dead_letters(result: PipelineResult) -> None:
    """One Prefect event per run that dead-lettered anything: the `dead letter` automation
    (blocks/alerts.py) turns it into an alert; the run itself completes."""
    files = {**result.loaded.dead_lettered, **result.transformed.dead_lettered}
    if not files and not result.loaded.rows_rejected:
        return
    from prefect.events import emit_event
    from prefect.runtime import flow_run

    emit_event(
        event=DEAD_LETTER_EVENT,
        resource={"prefect.resource.id": f"cryptolytics.pipeline.{flow_run.id}"},
        payload={
            "files": list(files)[:20],
            "reasons": list(files.values())[:20],
            "rows_rejected": result.loaded.rows_rejected,
            "summary": dead_letter_summary(result),
        },
    )


@flow(name="pipeline", timeout_seconds=TICK_TIMEOUT_SECONDS)
def pipeline(asset_limit: int | None = None, full_refresh: bool = False) -> PipelineResult:
    """One tick: fetch a snapshot into the lake, load what is pending, build the models.
    `full_refresh` rebuilds every model from raw (what the system we replaced did on every run;
    after a model change, or to compare, as bench/ does). A run lasts at most
    TICK_TIMEOUT_SECONDS; a lake file or rows a stage refuses are dead letters (moved to
    quarantine, on the health page, an event for the alert automation) and never fail it."""
    logger = get_run_logger()
    settings = get_settings()
    source = resolve_source(settings)
    target = resolve_target(settings)
    seconds: dict[str, float] = {}
    # The snapshot is taken under the lake's lock only, so a long audit or a busy warehouse
    # never costs us the market at this tick: it waits in the lake for the next load.
    started = time.perf_counter()
    try:
        with exclusive_run(settings.lake_lock_path, timeout_seconds=settings.lock_timeout_seconds):
            for _ in range(source.snapshots_this_tick(target.lake)):  # >1: the replay's seed
                extracted: ExtractResult | None = extract_snapshot(source, target.lake, asset_limit)
        extract_error: Exception | None = None
    except Exception as exc:  # load and transform still catch up; re-raised below
        extracted, extract_error = None, exc
    seconds["extract"] = time.perf_counter() - started
    with exclusive_run(
        settings.pipeline_lock_path, timeout_seconds=settings.lock_timeout_seconds
    ) as waited:
        if waited > 1:
            logger.info("Waited %.1fs for the warehouse (another run or the audit).", waited)
        started = time.perf_counter()
        loaded = load_pending_files(target)
        seconds["load"] = time.perf_counter() - started
        started = time.perf_counter()
        transformed = build_and_publish(settings, target, full_refresh)
        seconds["transform"] = time.perf_counter() - started
        if extract_error is not None:
            raise extract_error
        assert extracted is not None
        report = read_history_report(target, settings.mover_filter)

    result = PipelineResult(extracted, loaded, transformed, report, seconds)
    announce_dead_letters(result)
    create_markdown_artifact(
        key="pipeline-summary",
        markdown=summary_markdown(result),
        description="What this pipeline run did",
    )
    create_table_artifact(
        key="top-movers",
        table=movers_table(report),
        description="Top 24h gainers and losers in the latest snapshot, among coins with "
        + settings.mover_filter.described(),
    )
    logger.info(
        "Tick done: %d assets fetched, %d rows loaded, %d models built; %s fact rows in history.",
        extracted.asset_count,
        loaded.rows_loaded,
        transformed.models_built,
        f"{report.facts_rows:,}",
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="Run one pipeline tick: extract, load, transform.")
    parser.add_argument(
        "--asset-limit", type=int, default=None, help="assets to fetch (default: settings)"
    )
    args = parser.parse_args()
    finish(
        pipeline(asset_limit=args.asset_limit, return_state=True),
        lambda r: (
            f"Tick done: snapshot {r.extracted.snapshot_at} ({r.extracted.source}), "
            f"{r.loaded.rows_loaded:,} rows loaded, {r.transformed.models_built} models built, "
            f"{r.transformed.tests_passed} tests passed; {r.report.facts_rows:,} fact rows."
        ),
    )


if __name__ == "__main__":
    main()
