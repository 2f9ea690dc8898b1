"""load: every lake file not yet in the warehouse -> raw table, one transaction per file.

    python -m flows.load [--reload | --verify]

A file that cannot be loaded is moved to the lake's quarantine with its reason (a dead
letter, on the health page) and the others load. `--verify` compares every loaded file
with the size and SHA-256 the manifest recorded, and lists files missing, altered or
never loaded, before anyone trusts a `--reload` to rebuild history from the lake.
"""

from __future__ import annotations

import argparse

from prefect import flow, get_run_logger

from flows.adapters.targets import Target, resolve_target
from flows.core.loading import LoadResult, VerifyReport, load_pending, verify_lake
from flows.core.settings import (
    MAINTENANCE_TIMEOUT_SECONDS,
    get_settings,
)
from flows.runtime.cli import finish
from flows.runtime.locking import exclusive_run
from flows.runtime.steps import warehouse_step


@warehouse_step
def load_pending_files(target: Target, reload: bool = False) -> LoadResult:
    """Catch the warehouse up with the lake (in the `load` or `pipeline` flow). Retried: a
    bad file cannot fail it (it is dead-lettered), a busy warehouse can."""
    logger = get_run_logger()
    with target.open_warehouse() as warehouse:
        if reload:
            warehouse.forget_loads()
        result = load_pending(target.lake, warehouse)
    logger.info(
        "Loaded %d rows from %d new lake file(s); %d file(s) were already loaded.",
        result.rows_loaded,
        result.files_loaded,
        result.files_already_loaded,
    )
    for path, reason in result.dead_lettered.items():
        logger.error("Dead letter: %s moved to quarantine: %s", path, reason)
    if result.rows_rejected:
        logger.warning(
            "%d asset(s) left out by validation (recorded in ops.dead_letters).",
            result.rows_rejected,
        )
    if result.unknown_files:
        logger.warning(
            "%d file(s) in the lake do not fit its layout and were not loaded: %s",
            len(result.unknown_files),
            ", ".join(result.unknown_files[:5]),
        )
    return result


@warehouse_step
def verify_lake_files(target: Target) -> VerifyReport:
    with target.open_warehouse() as warehouse:
        return verify_lake(target.lake, warehouse)


def describe(report: VerifyReport) -> list[str]:
    """The report as lines for a log or a terminal."""
    lines = [
        f"{report.checked} loaded file(s) checked against the manifest: "
        f"{len(report.missing)} missing, {len(report.altered)} altered, "
        f"{len(report.not_loaded)} in the lake but not loaded, "
        f"{report.without_digest} loaded before digests were kept (existence checked only), "
        f"{len(report.unknown)} name(s) outside the layout."
    ]
    for label, paths in (
        ("missing", report.missing),
        ("altered", report.altered),
        ("not loaded", report.not_loaded),
        ("outside the layout", report.unknown),
    ):
        lines += [f"  {label}: {path}" for path in paths[:50]]
    return lines


@flow(name="load", timeout_seconds=MAINTENANCE_TIMEOUT_SECONDS)
def load(reload: bool = False, verify: bool = False) -> LoadResult | VerifyReport:
    """Catch the warehouse up with the lake; safe to run any number of times. `reload`
    empties the raw tables first and reads the whole lake again (after retention, to
    rebuild old ranges: then run `transform --full-refresh`). `verify` only checks the lake
    against the manifest and fails if a loaded file is missing or altered."""
    settings = get_settings()
    target = resolve_target(settings)
    with exclusive_run(settings.pipeline_lock_path, timeout_seconds=settings.lock_timeout_seconds):
        if not verify:
            return load_pending_files(target, reload)
        report = verify_lake_files(target)
    for line in describe(report):
        get_run_logger().info(line)
    if not report.ok:
        raise RuntimeError(
            f"the lake no longer matches what was loaded: {len(report.missing)} file(s) "
            f"missing, {len(report.altered)} altered (a --reload would not reproduce history)"
        )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description="Load every lake file not yet in the warehouse.")
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--reload", action="store_true", help="empty the raw tables and load the whole lake again"
    )
    action.add_argument(
        "--verify", action="store_true", help="check loaded files against the manifest's digests"
    )
    args = parser.parse_args()
    state = load(reload=args.reload, verify=args.verify, return_state=True)
    result = state.result(raise_on_failure=False)
    if isinstance(result, VerifyReport):  # what is wrong, file by file, even on failure
        print("\n".join(describe(result)))
    finish(state, loaded_line)


def loaded_line(result: VerifyReport | LoadResult) -> str:
    if isinstance(result, VerifyReport):
        return "Verify: the lake matches the manifest."
    return (
        f"Load: {result.files_loaded} file(s), {result.rows_loaded:,} rows loaded; "
        f"{result.files_already_loaded} already loaded, {len(result.dead_lettered)} moved to "
        "quarantine."
    )


if __name__ == "__main__":
    main()
