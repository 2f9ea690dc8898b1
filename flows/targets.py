"""The local/cloud choice, made once: `resolve_target(settings)` returns everything that
differs between targets, and no other module asks which target it runs on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flows.lake import Lake
from flows.serving import PublishResult, Reader, ServingReader, publish
from flows.settings import Settings
from flows.warehouse import DuckDBWarehouse


@dataclass(frozen=True)
class Target:
    name: str
    lake: Lake
    open_warehouse: Callable[[], Any]  # a context manager giving a `Warehouse`
    dbt_target: str
    dbt_env: dict[str, str] = field(default_factory=dict)  # what the dbt profile reads
    release_dbt: Callable[[], None] = lambda: None  # free dbt's handles after a run
    # make the new models visible to the app (full=True after a full refresh)
    publish: Callable[[bool], PublishResult | None] = lambda full: None
    open_reader: Callable[[], Reader] | None = None  # what the app queries


def _release_dbt_duckdb() -> None:
    """dbt-duckdb may keep its connection to the warehouse file open after an in-process
    run; DuckDB allows one writing process per file, so close it before anyone else writes."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    env = DuckDBConnectionManager._ENV
    if env is not None:
        env.close()
    DuckDBConnectionManager.close_all_connections()


def _local(settings: Settings) -> Target:
    path = settings.duckdb_path.resolve()
    serving_dir = settings.serving_dir.resolve()
    memory = settings.warehouse_memory_limit
    return Target(
        name="local",
        lake=Lake(settings.lake_url),
        open_warehouse=lambda: DuckDBWarehouse(path, memory),
        dbt_target=settings.resolved_dbt_target,
        dbt_env={"DBT_DUCKDB_PATH": str(path), "DBT_DUCKDB_MEMORY_LIMIT": memory},
        release_dbt=_release_dbt_duckdb,
        publish=lambda full: publish(path, serving_dir, full=full, memory_limit=memory),
        open_reader=lambda: ServingReader(serving_dir),
    )


_TARGETS: dict[str, Callable[[Settings], Target]] = {"local": _local}


def resolve_target(settings: Settings) -> Target:
    try:
        build = _TARGETS[settings.target]
    except KeyError:
        raise ValueError(
            f"CRYPTOLYTICS_TARGET={settings.target!r} is not available in this version; "
            f"choose one of {sorted(_TARGETS)}"
        ) from None
    return build(settings)
