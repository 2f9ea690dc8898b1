"""The warm dbt runner: parse once, build many times, parse again when the project changes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from flows.adapters.dbt_runner import WarmDbt, manifest_cache_dir
from flows.adapters.duckdb_warehouse import DuckDBWarehouse
from flows.adapters.targets import resolve_target
from flows.core.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.integration


def test_the_manifest_is_reused_until_a_project_file_changes(
    settings: Settings, tmp_path: Path
) -> None:
    project = tmp_path / "dbt"
    shutil.copytree(PROJECT_ROOT / "dbt", project, ignore=shutil.ignore_patterns("target", "logs"))
    DuckDBWarehouse(settings.duckdb_path).close()  # raw tables exist, empty
    target = resolve_target(settings)
    finished: list[str] = []
    dbt = WarmDbt(project, release=target.release_dbt, on_node=lambda n: finished.append(n.node))

    first = dbt.build(target.dbt_target, target.dbt_env)
    second = dbt.build(target.dbt_target, target.dbt_env)
    model = project / "models" / "marts" / "dim_coins.sql"
    model.write_text(model.read_text() + "\n-- edited\n")
    os.utime(model, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns + 10**9))
    third = dbt.build(target.dbt_target, target.dbt_env)

    assert first.success and second.success and third.success, (first.error, first.failed)
    assert [b.manifest_from for b in (first, second, third)] == ["parse", "memory", "parse"]
    assert second.parse_seconds == 0.0
    assert first.models_built == len(list((project / "models").rglob("*.sql")))
    data_tests = [n for n in first.nodes if n.resource_type == "test"]
    assert len(data_tests) == defined_data_tests(project)  # every one ran
    assert first.tests_passed == len(data_tests)
    assert all(n.resource_type != "unit_test" for n in first.nodes)  # CI runs those, not ticks
    assert set(finished) == {n.node for n in first.nodes}  # every node reported as it finished


def test_a_fresh_process_loads_the_saved_parse_and_a_damaged_one_costs_a_parse(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `make install` parses, a new process (a new WarmDbt) loads instead of parsing,
    keyed by the files' contents: a clone with new time stamps still hits, an edit misses."""
    monkeypatch.delenv("DBT_TARGET_PATH", raising=False)
    project = tmp_path / "dbt"
    shutil.copytree(PROJECT_ROOT / "dbt", project, ignore=shutil.ignore_patterns("target", "logs"))
    DuckDBWarehouse(settings.duckdb_path).close()
    target = resolve_target(settings)
    installed = WarmDbt(project, release=target.release_dbt)
    _manifest, source, _seconds = installed.manifest(target.dbt_target, target.dbt_env)
    assert source == "parse"
    saved = list(manifest_cache_dir(project).glob("*.msgpack"))
    assert len(saved) == 1

    for path in project.rglob("*.sql"):  # a fresh clone: same contents, new time stamps
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    fresh = WarmDbt(project, release=target.release_dbt).build(target.dbt_target, target.dbt_env)
    assert fresh.success, (fresh.error, fresh.failed)
    assert fresh.manifest_from == "cache"
    assert fresh.models_built == len(list((project / "models").rglob("*.sql")))

    saved[0].write_bytes(b"\x00 not a manifest")
    damaged = WarmDbt(project, release=target.release_dbt).build(target.dbt_target, target.dbt_env)
    assert damaged.success and damaged.manifest_from == "parse"

    # the same warehouse name in another folder, another memory limit: the same relations
    moved = {"DBT_DUCKDB_PATH": str(tmp_path / "elsewhere" / settings.duckdb_path.name),
             "DBT_DUCKDB_MEMORY_LIMIT": "1GB"}  # fmt: skip
    _m, source, _s = WarmDbt(project).manifest(target.dbt_target, moved)
    assert source == "cache"
    renamed = {**target.dbt_env, "DBT_DUCKDB_PATH": str(tmp_path / "other.duckdb")}
    _m, source, _s = WarmDbt(project).manifest(target.dbt_target, renamed)
    assert source == "parse"  # another database name in every relation: a miss
    assert len(list(manifest_cache_dir(project).glob("*.msgpack"))) == 2


def test_a_tick_selects_what_its_sources_reach_and_an_unknown_kind_of_file_builds_all() -> None:
    """The selectors name the sources the tick's rows came from (tables and tests below them,
    never views); a kind of lake file the selection does not know builds every node rather
    than fail the tick (the flow test runs these selectors through dbt)."""
    from flows.adapters.dbt_runner import tick_selection

    assert tick_selection(frozenset()) == []
    assert tick_selection(frozenset({"assets"})) == [
        "source:coincap.lake_files+",
        "source:coincap.coincap_assets+,config.materialized:table",
        "source:coincap.coincap_assets+,config.materialized:incremental",
        "source:coincap.coincap_assets+,resource_type:test",
    ]
    assert tick_selection(frozenset({"assets", "snapshots-of-tomorrow"})) is None


def defined_data_tests(project: Path) -> int:
    """The data tests the project's YAML declares, on models, sources and their columns."""
    count = 0
    for path in (project / "models").rglob("*.yml"):
        document = yaml.safe_load(path.read_text()) or {}
        nodes = list(document.get("models", []))
        for source in document.get("sources", []):
            nodes.extend(source.get("tables", []))
        for node in nodes:
            count += len(node.get("data_tests", []))
            count += sum(len(column.get("data_tests", [])) for column in node.get("columns", []))
    return count
