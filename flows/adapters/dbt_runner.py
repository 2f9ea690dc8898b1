"""dbt in-process, kept warm: parse the project once per process, then build from that
manifest on every tick.

Parsing is most of the cost of a small incremental build (about 1.5 s of a 3 s build here);
a long-running deployment process pays it once and again only when a project file, the
dbt target or the profile's environment changes. Nothing here knows about Prefect: the
transform flow wraps it in one task and reports the node results (flows/transform.py).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbt.cli.main import dbtRunner

from flows.core.loading import DbtNodeResult

if TYPE_CHECKING:
    from flows.adapters.targets import Target

PROJECT_FILE_SUFFIXES = (".sql", ".yml", ".yaml", ".csv", ".md")


@dataclass(frozen=True)
class DbtBuild:
    success: bool
    nodes: list[DbtNodeResult]
    parsed: bool  # False when a warm manifest was reused
    parse_seconds: float
    build_seconds: float
    error: str | None = None

    @property
    def failed(self) -> list[str]:
        return [n.node for n in self.nodes if n.status in ("error", "fail")]

    @property
    def models_built(self) -> int:
        return sum(1 for n in self.nodes if n.resource_type == "model" and n.status == "success")

    @property
    def tests_passed(self) -> int:
        return sum(
            1 for n in self.nodes if n.resource_type in ("test", "unit_test") and n.status == "pass"
        )


def node_result(node: Any) -> DbtNodeResult:
    """One dbt node's outcome, as the warehouse keeps it (with where a failing test stored
    its rows, when it stores failures)."""
    status = str(node.status)
    stored = getattr(node.node, "relation_name", None) if status == "fail" else None
    return DbtNodeResult(
        node=node.node.name,
        resource_type=str(node.node.resource_type),
        status=status,
        seconds=float(node.execution_time or 0),
        message=node.message,
        failures_relation=stored if node.node.config.get("store_failures") else None,
    )


@contextmanager
def dbt_environment(values: dict[str, str]) -> Iterator[None]:
    """What the dbt profile reads, set for the duration of the run only."""
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def project_fingerprint(project_dir: Path, target: str, env: dict[str, str]) -> str:
    """Changes whenever a parse could give a different manifest."""
    digest = hashlib.sha1(f"{target}|{sorted(env.items())}".encode())
    for path in sorted(project_dir.rglob("*")):
        relative = path.relative_to(project_dir)
        if relative.parts[0] in ("target", "logs") or path.suffix not in PROJECT_FILE_SUFFIXES:
            continue
        stat = path.stat()
        digest.update(f"{relative}|{stat.st_mtime_ns}|{stat.st_size}".encode())
    return digest.hexdigest()


class WarmDbt:
    """One dbt project, parsed once and built many times in this process."""

    def __init__(
        self,
        project_dir: Path,
        *,
        release: Callable[[], None] | None = None,
        on_node: Callable[[DbtNodeResult], None] | None = None,
    ) -> None:
        self.project_dir = project_dir
        self.release = release  # free the adapter's handles after each invoke
        self.on_node = on_node
        self._manifest: Any = None
        self._fingerprint: str | None = None

    def _args(self, command: list[str], target: str) -> list[str]:
        project = str(self.project_dir)
        return [*command, "--target", target, "--project-dir", project, "--profiles-dir", project]

    def _invoke(self, runner: dbtRunner, args: list[str]) -> Any:
        try:
            return runner.invoke([*args, "--quiet", "--no-write-json"])
        finally:
            if self.release is not None:
                self.release()

    def manifest(self, target: str, env: dict[str, str]) -> tuple[Any, float]:
        """The parsed project, reusing the last parse while nothing changed."""
        fingerprint = project_fingerprint(self.project_dir, target, env)
        if self._manifest is not None and fingerprint == self._fingerprint:
            return self._manifest, 0.0
        started = time.perf_counter()
        with dbt_environment({"DO_NOT_TRACK": "1", **env}):
            parsed = self._invoke(dbtRunner(), self._args(["parse"], target))
        if not parsed.success:
            raise RuntimeError(f"dbt could not parse the project: {parsed.exception}")
        self._manifest, self._fingerprint = parsed.result, fingerprint
        return self._manifest, time.perf_counter() - started

    def build(
        self,
        target: str,
        env: dict[str, str],
        *,
        full_refresh: bool = False,
        run_env: dict[str, str] | None = None,
        command: str = "build",
    ) -> DbtBuild:
        """Build (or only `test`) from the warm manifest. `run_env` is read only while
        running (the tests' scope), so it changes without a new parse."""
        manifest, parse_seconds = self.manifest(target, env)
        # unit tests check SQL logic, not data: CI runs them (make test), ticks need not
        args = [command, "--exclude-resource-type", "unit_test"]
        if full_refresh:
            args.append("--full-refresh")
        runner = dbtRunner(manifest=manifest, callbacks=[self._event])
        started = time.perf_counter()
        with dbt_environment({"DO_NOT_TRACK": "1", **env, **(run_env or {})}):
            result = self._invoke(runner, self._args(args, target))
        nodes = [node_result(n) for n in (result.result or [])]
        return DbtBuild(
            success=bool(result.success),
            nodes=nodes,
            parsed=parse_seconds > 0,
            parse_seconds=parse_seconds,
            build_seconds=time.perf_counter() - started,
            error=None if result.exception is None else str(result.exception),
        )

    def _event(self, event: Any) -> None:
        """Pass each finished node on as it happens (the flow logs it)."""
        if self.on_node is None or event.info.name != "NodeFinished":
            return
        node = event.data.run_result
        self.on_node(
            DbtNodeResult(
                node=event.data.node_info.node_name,
                resource_type=event.data.node_info.resource_type,
                status=str(node.status),
                seconds=float(node.execution_time or 0),
                message=node.message or None,
            )
        )


_warm: dict[tuple[str, str], WarmDbt] = {}  # one parsed project per process and target


def warm_dbt(target: Target, project_dir: str) -> WarmDbt:
    """This process's parsed project for `target` (a warm worker's runs share it)."""
    key = (project_dir, target.name)
    if key not in _warm:
        _warm[key] = WarmDbt(Path(project_dir), release=target.release_dbt)
    return _warm[key]
