"""The local/cloud choice of the pipeline, made once: `resolve_target(settings)` returns the
`Target`, which holds everything that differs between the two, so no flow asks which one it
runs on. (The app, which must run without Prefect, picks its reader by the same setting in
`flows/adapters/app_reader.py`; on the cloud the CoinCap key may come from a Prefect block,
`flows/adapters/source.py`.)

A target is a lake, a warehouse (`flows.core.loading.Warehouse`), the dbt profile that builds
on it, and how the built models are published for the app. Publishing belongs to the target,
not the warehouse: on DuckDB it copies the closed warehouse file into the app's serving copies
(one writing process per file), on BigQuery the app reads the prod dataset where dbt built it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from flows.adapters.duckdb_warehouse import DuckDBWarehouse
from flows.adapters.lake import Lake
from flows.adapters.serving import PublishResult, publish
from flows.core.loading import Warehouse
from flows.core.settings import GCP_CREDENTIALS_BLOCK, Settings

if TYPE_CHECKING:
    from google.auth.credentials import Credentials

    from flows.adapters.bigquery import BigQueryDatasets


class Target(Protocol):
    """Where the pipeline keeps and builds data: what every flow is given."""

    @property
    def name(self) -> str: ...

    @property
    def lake(self) -> Lake: ...

    @property
    def dbt_target(self) -> str:
        """The output of dbt/profiles.yml that builds on this target."""
        ...

    @property
    def dbt_env(self) -> dict[str, str]:
        """What that profile reads from the environment."""
        ...

    def open_warehouse(self) -> Warehouse:
        """The warehouse, as a context manager: hold it only as long as a step needs it."""
        ...

    def release_dbt(self) -> None:
        """Free what an in-process dbt run still holds of the warehouse."""
        ...

    def publish(self, *, full: bool, ops_only: bool) -> PublishResult | None:
        """Make the new models visible to the app: `full` after a full refresh, `ops_only`
        after a failed build (only the health page's tables)."""
        ...


@dataclass(frozen=True)
class LocalTarget:
    """A folder lake, one DuckDB file, and serving copies the app reads."""

    lake: Lake
    duckdb_path: Path
    serving_dir: Path
    memory_limit: str
    dbt_target: str
    name: str = "local"
    dbt_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dbt_env.update(
            {"DBT_DUCKDB_PATH": str(self.duckdb_path), "DBT_DUCKDB_MEMORY_LIMIT": self.memory_limit}
        )

    def open_warehouse(self) -> DuckDBWarehouse:
        return DuckDBWarehouse(self.duckdb_path, self.memory_limit)

    def release_dbt(self) -> None:
        """dbt-duckdb may keep its connection to the warehouse file open after an in-process
        run; DuckDB allows one writing process per file, so close it before anyone writes."""
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager

        env = DuckDBConnectionManager._ENV
        if env is not None:
            env.close()
        DuckDBConnectionManager.close_all_connections()

    def publish(self, *, full: bool, ops_only: bool) -> PublishResult:
        return publish(
            self.duckdb_path,
            self.serving_dir,
            full=full,
            memory_limit=self.memory_limit,
            ops_only=ops_only,
        )


@dataclass(frozen=True)
class CloudTarget:
    """A GCS lake, BigQuery datasets, dbt-bigquery; the app reads the prod dataset."""

    lake: Lake
    settings: Settings = field(repr=False)
    credentials: Credentials = field(repr=False)
    dbt_target: str
    name: str = "cloud"
    dbt_env: dict[str, str] = field(default_factory=dict)

    def open_warehouse(self) -> BigQueryDatasets:
        from flows.adapters.bigquery import BigQueryDatasets, bigquery_client

        return BigQueryDatasets(
            bigquery_client(self.settings, self.credentials),
            self.lake,
            raw_dataset=self.settings.bigquery_staging_dataset,
            prod_dataset=self.settings.bigquery_prod_dataset,
            location=self.settings.bigquery_location,
        )

    def release_dbt(self) -> None:
        """dbt-bigquery holds nothing another process needs."""

    def publish(self, *, full: bool, ops_only: bool) -> None:
        """The models need no copy; record row counts and the time for the health page."""
        if ops_only:
            return
        with self.open_warehouse() as warehouse:
            warehouse.record_publish()


def local_target(settings: Settings) -> LocalTarget:
    return LocalTarget(
        lake=Lake(settings.lake_url),
        duckdb_path=settings.duckdb_path.resolve(),
        serving_dir=settings.serving_dir.resolve(),
        memory_limit=settings.warehouse_memory_limit,
        dbt_target=settings.dbt_target or "local",
    )


def cloud_target(settings: Settings) -> CloudTarget:
    """Credentials come from the GcpCredentials block `python -m blocks.register` saved; with
    emulator endpoints set (tests), anonymous ones, so nothing can reach Google."""
    if settings.facts_retention_days:
        raise ValueError(
            "CRYPTOLYTICS_FACTS_RETENTION_DAYS is for the local target; on BigQuery old "
            "partitions cost little (long-term storage) and expire by table setting"
        )
    emulated = settings.bigquery_api_endpoint is not None
    credentials: Credentials
    if emulated:
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
        lake = Lake(settings.lake_url, endpoint_url=settings.gcs_endpoint_url, token="anon")
    else:
        from prefect_gcp import GcpCredentials

        block = GcpCredentials.load(GCP_CREDENTIALS_BLOCK)
        credentials = block.get_credentials_from_service_account()
        lake = Lake(settings.lake_url, token=credentials, project=settings.gcp_project)
    keyfile = settings.gcp_credentials_file
    return CloudTarget(
        lake=lake,
        settings=settings,
        credentials=credentials,
        dbt_target=settings.dbt_target or ("cloud_emulator" if emulated else "cloud"),
        dbt_env={
            "DBT_RAW_SCHEMA": settings.bigquery_staging_dataset,
            "DBT_STAGING_SCHEMA": settings.bigquery_staging_dataset,
            "DBT_PROD_SCHEMA": settings.bigquery_prod_dataset,
            "DBT_BIGQUERY_PROJECT": settings.gcp_project or "",
            "DBT_BIGQUERY_LOCATION": settings.bigquery_location,
            "DBT_BIGQUERY_KEYFILE": str(keyfile.resolve()) if keyfile else "",
            "DBT_BIGQUERY_API_ENDPOINT": settings.bigquery_api_endpoint or "",
        },
    )


TARGETS: dict[str, Callable[[Settings], Target]] = {"local": local_target, "cloud": cloud_target}


def resolve_target(settings: Settings) -> Target:
    try:
        build = TARGETS[settings.target]
    except KeyError:
        raise ValueError(
            f"CRYPTOLYTICS_TARGET={settings.target!r} is not available in this version; "
            f"choose one of {sorted(TARGETS)}"
        ) from None
    return build(settings)
