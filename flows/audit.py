"""audit: every data test on whole tables, and the lake against the manifest, on a schedule.

    python -m flows.audit

A tick tests only the rows it added, so one old row cannot hold publishing for ever; this
flow is where old rows are judged. It runs dbt's data tests on every row (no load-sequence
scope) and `load --verify`'s check of every loaded file, records the outcome in
`ops.audit` for the health page and publishes it, and fails its own run (an alert) when
anything is wrong. It never blocks a tick: it takes the pipeline lock only while it runs,
and a tick waits at most CRYPTOLYTICS_LOCK_TIMEOUT_SECONDS for it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from prefect import flow, get_run_logger

from flows.adapters.dbt_runner import warm_dbt
from flows.adapters.targets import Target, resolve_target
from flows.core.loading import AuditCheck
from flows.core.settings import (
    MAINTENANCE_TIMEOUT_SECONDS,
    get_settings,
)
from flows.load import describe, verify_lake_files
from flows.runtime.cli import finish
from flows.runtime.locking import exclusive_run
from flows.runtime.steps import dbt_step, warehouse_step
from flows.transform import publish


@dataclass(frozen=True)
class AuditResult:
    checks: list[AuditCheck] = field(default_factory=list)

    @property
    def failed(self) -> list[AuditCheck]:
        """Failed or errored checks; a warning (a test of `severity: warn`) is shown, not
        failed on."""
        return [check for check in self.checks if check.status in ("fail", "error")]


@dbt_step
def test_whole_tables(target: Target, project_dir: str) -> list[AuditCheck]:
    """dbt test with no scope: `__new_rows__` becomes `load_seq > 0`, every row."""
    build = warm_dbt(target, project_dir).build(
        target.dbt_target,
        target.dbt_env,
        run_env={"CRYPTOLYTICS_TESTS_AFTER_SEQ": "0"},
        command="test",
    )
    if build.error and not build.nodes:
        return [AuditCheck("dbt test", "error", build.error[:500])]
    return [
        AuditCheck(f"dbt {node.node}", "pass" if node.status == "pass" else node.status,
                   node.message)
        for node in build.nodes
    ]  # fmt: skip


@warehouse_step
def record_audit(target: Target, checks: list[AuditCheck]) -> None:
    with target.open_warehouse() as warehouse:
        warehouse.record_audit(checks)


@flow(name="audit", timeout_seconds=MAINTENANCE_TIMEOUT_SECONDS)
def audit() -> AuditResult:
    """Whole-table data tests and the lake's digests; the result goes to the health page."""
    logger = get_run_logger()
    settings = get_settings()
    target = resolve_target(settings)
    with exclusive_run(settings.pipeline_lock_path, timeout_seconds=settings.lock_timeout_seconds):
        checks = test_whole_tables(target, str(settings.dbt_project_dir))
        report = verify_lake_files(target)
        lines = describe(report)
        checks.append(AuditCheck("lake matches manifest", "pass" if report.ok else "fail",
                                 " ".join(lines[:1] + lines[1:11])))  # fmt: skip
        record_audit(target, checks)
        publish(target, False, ops_only=True)
    result = AuditResult(checks)
    for check in result.failed:
        logger.error("Audit: %s: %s (%s)", check.check, check.status, check.message)
    if result.failed:
        raise RuntimeError(
            f"audit: {len(result.failed)} of {len(checks)} check(s) failed: "
            + ", ".join(check.check for check in result.failed[:5])
        )
    logger.info("Audit: all %d checks passed.", len(checks))
    return result


def main() -> None:
    argparse.ArgumentParser(description=audit.__doc__).parse_args()
    finish(audit(return_state=True), lambda r: f"Audit: all {len(r.checks)} checks passed.")


if __name__ == "__main__":
    main()
