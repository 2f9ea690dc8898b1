"""transform: dbt build (staging, dimension, fact, marts and their data tests), kept warm.

    python -m flows.transform [--full-refresh]

dbt runs in this process from a manifest parsed once per process
(flows/adapters/dbt_runner.py), as one Prefect task that logs every node as it finishes and
leaves a table artifact of the node results, so the Prefect UI still shows the whole dbt
run without one task per node.

The tests of a build look at the rows loaded since the last passing build (by load
sequence), so one old row cannot fail every later build. The staging gate stores its failing
rows; when only the gate fails, the lake files behind those rows are dead letters: moved to
quarantine with the failing tests as the reason, their rows taken out of the raw tables, and
the build runs again without them. Any other failure is a defect in a model: it holds
publishing (the last good serving copy stays) and fails the run; the health page shows the
failed build either way.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows.adapters.dbt_runner import DbtBuild, tick_selection, warm_dbt
from flows.adapters.serving import PublishResult
from flows.adapters.targets import Target, resolve_target
from flows.core.lake_layout import source_of
from flows.core.loading import BuildScope, DbtNodeResult, DeadLetter
from flows.core.settings import (
    MAINTENANCE_TIMEOUT_SECONDS,
    Settings,
    get_settings,
)
from flows.core.text import plain
from flows.runtime.cli import finish
from flows.runtime.locking import exclusive_run
from flows.runtime.steps import dbt_step, warehouse_step


class DbtBuildFailed(RuntimeError):
    """A model or a data test failed; the results are recorded for the health page."""


@warehouse_step
def read_build_scope(target: Target) -> tuple[BuildScope, bool]:
    """What this build tests, and whether the models need one full rebuild (an upgrade)."""
    with target.open_warehouse() as warehouse:
        return warehouse.build_scope(), warehouse.models_predate_load_seq()


@dbt_step
def dbt_build(
    target: Target, project_dir: str, full_refresh: bool, scope: BuildScope | None = None
) -> DbtBuild:
    """The models and data tests in one task; each finished node is logged as it happens.
    Every node when the project changed since its last whole build (a release: new or
    changed models and views), after a full refresh, or with no scope; otherwise only what
    the new rows reach (`tick_selection`): a tick that loaded one snapshot rebuilds the
    tables downstream of `/assets` and runs their tests, on those rows."""
    logger = get_run_logger()

    def log_node(node: DbtNodeResult) -> None:
        log = logger.info if node.status in ("success", "pass") else logger.warning
        log("dbt %s %s: %s in %.2fs", node.resource_type, node.node, node.status, node.seconds)

    runner = warm_dbt(target, project_dir)
    runner.on_node = log_node
    project = runner.fingerprint(target.dbt_target, target.dbt_env)
    whole = full_refresh or scope is None or scope.whole_project != project
    build = runner.build(
        target.dbt_target,
        target.dbt_env,
        full_refresh=full_refresh,
        run_env=scope.dbt_env() if scope else {"CRYPTOLYTICS_TESTS_AFTER_SEQ": "0"},
        select=None if whole or scope is None else tick_selection(scope.new_kinds),
    )
    if not build.nodes and not build.whole:
        logger.info("dbt: no rows since the last passing build reach any model; nothing built.")
        return build
    logger.info(
        "dbt: %s, %s, build %.2fs.",
        {
            "parse": f"parsed in {build.parse_seconds:.2f}s",
            "cache": f"saved manifest loaded in {build.parse_seconds:.2f}s",
            "memory": "warm manifest reused",
        }[build.manifest_from],
        "every node" if build.whole else f"{len(build.nodes)} nodes the new rows reach",
        build.build_seconds,
    )
    create_table_artifact(
        key="dbt-results",
        table=[
            {
                "node": n.node,
                "type": n.resource_type,
                "status": n.status,
                "seconds": round(n.seconds, 3),
                "message": plain(n.message or ""),  # may quote data; the UI renders Markdown
            }
            for n in build.nodes
        ],
        description="Every dbt node of this build",
    )
    return build


@warehouse_step
def publish(target: Target, full: bool, ops_only: bool = False) -> PublishResult | None:
    """Make the new models visible to the app (see flows/adapters/serving.py); `ops_only` after a
    failed build: the health page learns of it, the models stay as last published."""
    return target.publish(full=full, ops_only=ops_only)


def gate_failures(build: DbtBuild) -> list[DbtNodeResult] | None:
    """The failing staging-gate tests, when nothing but them failed (a data defect the
    files can be quarantined for); None when anything else failed (a model defect)."""
    failing = [n for n in build.nodes if n.status in ("error", "fail")]
    if build.error or not failing or any(n.failures_relation is None for n in failing):
        return None
    return failing


@warehouse_step
def dead_letter_gate_failures(
    target: Target, failing: list[DbtNodeResult], after_seq: int
) -> dict[str, str]:
    """Move the lake files behind the gate's failing rows *of this build* to quarantine
    (a duplicate's older twin, built and published long ago, stays). Copy and note, then
    the rows out of the warehouse, then the lake file: a crash at any point is finished by
    the next build (a file still in the lake is loaded and refused again)."""
    tests = ", ".join(n.node for n in failing)
    moved: dict[str, str] = {}
    with target.open_warehouse() as warehouse:
        relations = [n.failures_relation or "" for n in failing]
        paths = warehouse.failing_lake_paths(relations, after_seq)
        for path, rules in sorted(paths.items()):
            reason = f"dbt test(s) {tests} failed on its rows: {', '.join(sorted(rules))}"
            kept = target.lake.dead_letter(path, "build", reason, remove=False)
            warehouse.forget_file(path)
            warehouse.record_dead_letters(
                [DeadLetter("build", source_of(path), path, reason, kept)]
            )
            target.lake.remove(path)
            moved[path] = reason
    return moved


@warehouse_step
def apply_retention(target: Target, days: int) -> int:
    with target.open_warehouse() as warehouse:
        if not warehouse.supports_retention:
            raise ValueError(f"the {target.name} warehouse keeps every fact (no retention)")
        return warehouse.apply_retention(days)


@warehouse_step
def record_dbt_results(
    target: Target,
    results: list[DbtNodeResult],
    scope: BuildScope | None = None,
    whole_project: str | None = None,
) -> None:
    with target.open_warehouse() as warehouse:
        warehouse.record_dbt_results(results, scope, whole_project)


@dataclass(frozen=True)
class TransformResult:
    models_built: int
    tests_passed: int
    seconds: float  # dbt build wall time (parse excluded)
    publish_seconds: float
    dead_lettered: dict[str, str] = field(default_factory=dict)  # lake file -> why


def build_and_publish(settings: Settings, target: Target, full_refresh: bool) -> TransformResult:
    """dbt build, its results kept, retention, then publish for the app (inside any flow)."""
    logger = get_run_logger()
    scope, predates = read_build_scope(target)
    if predates and not full_refresh:
        logger.warning(
            "The models were built by a release without load sequences: rebuilding them in "
            "full once (then incremental again)."
        )
        full_refresh = True
    project = str(settings.dbt_project_dir)
    build = dbt_build(target, project, full_refresh, scope)
    dead_lettered: dict[str, str] = {}
    failing = gate_failures(build)
    if failing is not None:
        record_dbt_results(target, build.nodes)
        dead_lettered = dead_letter_gate_failures(target, failing, scope.after_seq)
        for path, reason in dead_lettered.items():
            logger.error("Dead letter: %s moved to quarantine: %s", path, reason)
        if dead_lettered:
            scope, _ = read_build_scope(target)
            build = dbt_build(target, project, full_refresh, scope)
    if build.nodes or build.whole:
        record_dbt_results(target, build.nodes, scope, build.project if build.whole else None)
    if not build.success:
        publish(target, False, ops_only=True)
        raise DbtBuildFailed(f"dbt build failed: {build.failed or build.error}")
    if settings.facts_retention_days:
        dropped = apply_retention(target, settings.facts_retention_days)
        logger.info(
            "Retention: %d five-minute row(s) older than %d days dropped (their rollups stay).",
            dropped,
            settings.facts_retention_days,
        )
    published = publish(target, full_refresh)
    logger.info(
        "dbt build: %d models built, %d tests passed in %.2fs.",
        build.models_built,
        build.tests_passed,
        build.build_seconds,
    )
    if published is not None:
        logger.info(
            "Published serving copy %r for the app in %.2fs: %s",
            published.copy,
            published.seconds,
            published.rows_copied,
        )
    return TransformResult(
        models_built=build.models_built,
        tests_passed=build.tests_passed,
        seconds=build.build_seconds,
        publish_seconds=published.seconds if published else 0.0,
        dead_lettered=dead_lettered,
    )


@flow(name="transform", timeout_seconds=MAINTENANCE_TIMEOUT_SECONDS)
def transform(full_refresh: bool = False) -> TransformResult:
    """Build every dbt model incrementally (or from scratch) and run the data tests."""
    settings = get_settings()
    with exclusive_run(settings.pipeline_lock_path, timeout_seconds=settings.lock_timeout_seconds):
        return build_and_publish(settings, resolve_target(settings), full_refresh)


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the dbt models and run their tests.")
    parser.add_argument(
        "--full-refresh", action="store_true", help="rebuild incremental models from raw"
    )
    args = parser.parse_args()
    finish(
        transform(full_refresh=args.full_refresh, return_state=True),
        lambda r: f"dbt: {r.models_built} models built, {r.tests_passed} tests passed.",
    )


if __name__ == "__main__":
    main()
