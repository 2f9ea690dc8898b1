"""dbt in-process, kept warm: parse the project once, then build from that manifest on
every tick.

Parsing is most of the cost of a small incremental build (4-25 s here, against a 2-3 s
build). A parse is saved to `<dbt target path>/manifests/<fingerprint>.msgpack` (dbt's own
serialisation, the one its partial parsing uses), keyed by the project files' contents, the
dbt version, the target and the profile's environment. `make install` parses once
(`python -m flows.runtime.dbt_manifest`), so even a fresh process's first tick loads the
manifest in tens of milliseconds; a long-running process keeps it in memory and parses again
only when one of those inputs changes. Nothing here knows about Prefect: the transform flow
wraps it in one task and reports the node results (flows/transform.py).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dbt.cli.main import dbtRunner
from dbt.contracts.graph.manifest import Manifest
from dbt.parser.manifest import extended_mashumaro_encoder, extended_mashumuro_decoder
from dbt.version import __version__ as dbt_version

from flows.core.loading import DbtNodeResult

if TYPE_CHECKING:
    from flows.adapters.targets import Target

PROJECT_FILE_SUFFIXES = (".sql", ".yml", ".yaml", ".csv", ".md")
# the dbt source each kind of lake file is loaded into (flows/core/raw_schema.py)
SOURCE_OF_KIND = {
    "assets": "source:coincap.coincap_assets",
    "rates": "source:coincap.coincap_rates",
    "history": "source:coincap.coincap_history",
}
# what a tick rebuilds of a source's descendants: tables and their tests; views are defined
# once per project version (a view shows new rows without being rebuilt)
REBUILT = ("config.materialized:table", "config.materialized:incremental", "resource_type:test")
KEPT_MANIFESTS = 8  # older parses are deleted (each is about 1 MB)
ManifestFrom = Literal["memory", "cache", "parse"]


def tick_selection(new_kinds: frozenset[str]) -> list[str] | None:
    """dbt selectors for a tick that loaded rows of `new_kinds` (and nothing else): every
    table and data test downstream of those sources, and the manifest's own test. Views and
    models no new row reaches are left as they are; the last whole build made them. None
    (build every node) for a kind of lake file this does not know: never a tick's error."""
    if not new_kinds <= SOURCE_OF_KIND.keys():
        return None
    selectors = ["source:coincap.lake_files+"] if new_kinds else []
    for kind in sorted(new_kinds):
        selectors += [f"{SOURCE_OF_KIND[kind]}+,{nodes}" for nodes in REBUILT]
    return selectors


@dataclass(frozen=True)
class DbtBuild:
    success: bool
    nodes: list[DbtNodeResult]
    manifest_from: ManifestFrom  # kept in memory, loaded from the cache, or parsed now
    parse_seconds: float  # parsing or loading; 0 from memory
    build_seconds: float
    error: str | None = None
    project: str = ""  # the fingerprint of the project built
    whole: bool = True  # every node was selected (not a tick's selection)

    @property
    def parsed(self) -> bool:
        return self.manifest_from == "parse"

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


def parse_inputs(env: dict[str, str]) -> dict[str, str]:
    """The profile's environment as a parse sees it. Relation names embed the database,
    which for DuckDB is the file's stem, not its folder (two parses with the warehouse in
    different folders differ only in their time stamps: measured), and the memory limit
    shapes no manifest. Every other variable counts whole."""
    seen = {name: value for name, value in env.items() if name != "DBT_DUCKDB_MEMORY_LIMIT"}
    if "DBT_DUCKDB_PATH" in seen:
        seen["DBT_DUCKDB_PATH"] = Path(seen["DBT_DUCKDB_PATH"]).stem
    return seen


def project_fingerprint(project_dir: Path, target: str, env: dict[str, str]) -> str:
    """Changes whenever a parse could give a different manifest: a project file's contents
    (not its time stamps, so a fresh clone or a copied image hits the cache), the dbt
    version, the target and what of the profile's environment the parse sees."""
    inputs = sorted(parse_inputs(env).items())
    digest = hashlib.sha256(f"{dbt_version}|{target}|{inputs}".encode())
    for path in sorted(project_dir.rglob("*")):
        relative = path.relative_to(project_dir)
        if relative.parts[0] in ("target", "logs") or path.suffix not in PROJECT_FILE_SUFFIXES:
            continue
        digest.update(f"{relative.as_posix()}|{path.stat().st_size}|".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:32]


def manifest_cache_dir(project_dir: Path) -> Path:
    """Beside dbt's other parse artifacts: its target path (DBT_TARGET_PATH when set)."""
    base = Path(os.environ.get("DBT_TARGET_PATH") or "target")  # relative: to the project
    return (base if base.is_absolute() else project_dir / base) / "manifests"


def load_cached_manifest(path: Path) -> Manifest | None:
    """A saved parse, or None when there is none or it cannot be read (then we parse: a
    damaged cache file costs one parse, never a tick)."""
    try:
        return Manifest.from_msgpack(path.read_bytes(), decoder=extended_mashumuro_decoder)
    except FileNotFoundError:
        return None
    except Exception:  # any unreadable file means the same: parse again
        path.unlink(missing_ok=True)
        return None


def save_manifest(manifest: Manifest, path: Path) -> None:
    """Write-once by rename (a reader never sees half a file); the oldest parses beyond
    KEPT_MANIFESTS go. A read-only folder (the image's code) only means no cache."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(manifest.to_msgpack(extended_mashumaro_encoder))
        os.replace(partial, path)
        saved = sorted(path.parent.glob("*.msgpack"), key=lambda p: p.stat().st_mtime_ns)
        for old in saved[:-KEPT_MANIFESTS]:
            old.unlink(missing_ok=True)
    except OSError:
        return


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
        """No debug log file: every line of it is formatted, scrubbed of the environment's
        secrets and flushed (about 0.2 s of a 1 s build here, and 10 MB of logs/dbt.log each
        few minutes); every node's outcome reaches the flow's log through `on_node`."""
        try:
            return runner.invoke([*args, "--quiet", "--no-write-json", "--log-level-file", "none"])
        finally:
            if self.release is not None:
                self.release()

    def fingerprint(self, target: str, env: dict[str, str]) -> str:
        """The project as this target parses it now (see project_fingerprint)."""
        return project_fingerprint(self.project_dir, target, env)

    def manifest(self, target: str, env: dict[str, str]) -> tuple[Any, ManifestFrom, float]:
        """The parsed project: the last one in memory while nothing changed, else a saved
        parse of the same inputs, else a new parse (which is saved for the next process)."""
        fingerprint = project_fingerprint(self.project_dir, target, env)
        if self._manifest is not None and fingerprint == self._fingerprint:
            return self._manifest, "memory", 0.0
        started = time.perf_counter()
        cached = manifest_cache_dir(self.project_dir) / f"{fingerprint}.msgpack"
        manifest = load_cached_manifest(cached)
        source: ManifestFrom = "cache"
        if manifest is None:
            with dbt_environment({"DO_NOT_TRACK": "1", **env}):
                parsed = self._invoke(dbtRunner(), self._args(["parse"], target))
            if not parsed.success:
                raise RuntimeError(f"dbt could not parse the project: {parsed.exception}")
            manifest, source = parsed.result, "parse"
            save_manifest(manifest, cached)
        self._manifest, self._fingerprint = manifest, fingerprint
        return manifest, source, time.perf_counter() - started

    def build(
        self,
        target: str,
        env: dict[str, str],
        *,
        full_refresh: bool = False,
        run_env: dict[str, str] | None = None,
        command: str = "build",
        select: list[str] | None = None,
    ) -> DbtBuild:
        """Build (or only `test`) from the warm manifest, every node or the `select`ed.
        `run_env` is read only while running (the tests' scope), so it changes without a
        new parse."""
        manifest, manifest_from, parse_seconds = self.manifest(target, env)
        project = self._fingerprint or ""
        if select is not None and not select:  # nothing new reaches any node
            return DbtBuild(True, [], manifest_from, parse_seconds, 0.0, None, project, False)
        # unit tests check SQL logic, not data: CI runs them (make test), ticks need not
        args = [command, "--exclude-resource-type", "unit_test"]
        if select:
            args += ["--select", *select]
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
            manifest_from=manifest_from,
            parse_seconds=parse_seconds,
            build_seconds=time.perf_counter() - started,
            error=None if result.exception is None else str(result.exception),
            project=project,
            whole=select is None,
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
