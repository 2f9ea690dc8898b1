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
    # make the new models visible to the app: (full after a full refresh, ops_only after a
    # failed build: only the health page's tables)
    publish: Callable[[bool, bool], PublishResult | None] = lambda full, ops_only: None


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
        publish=lambda full, ops_only: publish(
            path, serving_dir, full=full, memory_limit=memory, ops_only=ops_only
        ),
    )


def _cloud(settings: Settings) -> Target:
    """GCS lake, BigQuery warehouse, dbt-bigquery. Credentials come from the GcpCredentials
    block `python -m blocks.register` saved; with emulator endpoints set (tests), anonymous
    ones, so nothing can reach Google. The app reads the models where dbt built them;
    "publishing" records row counts and the time for its health page."""
    from flows.bigquery import BigQueryWarehouse

    if settings.facts_retention_days:
        raise ValueError(
            "CRYPTOLYTICS_FACTS_RETENTION_DAYS is for the local target; on BigQuery old "
            "partitions cost little (long-term storage) and expire by table setting"
        )
    emulated = settings.bigquery_api_endpoint is not None
    if emulated:
        from google.auth.credentials import AnonymousCredentials

        credentials: Any = AnonymousCredentials()
        lake_options: dict[str, Any] = {"endpoint_url": settings.gcs_endpoint_url, "token": "anon"}
    else:
        from prefect_gcp import GcpCredentials

        from blocks.gcp import GCP_CREDENTIALS

        credentials = GcpCredentials.load(GCP_CREDENTIALS).get_credentials_from_service_account()
        lake_options = {"token": credentials, "project": settings.gcp_project}
    lake = Lake(settings.lake_url, **lake_options)

    def client() -> Any:
        return _bigquery_client(settings, credentials)

    def open_warehouse() -> BigQueryWarehouse:
        return BigQueryWarehouse(
            client(),
            lake,
            raw_dataset=settings.bigquery_staging_dataset,
            prod_dataset=settings.bigquery_prod_dataset,
            location=settings.bigquery_location,
        )

    keyfile = settings.gcp_credentials_file
    return Target(
        name="cloud",
        lake=lake,
        open_warehouse=open_warehouse,
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
        publish=lambda full, ops_only: None if ops_only else _publish_cloud(open_warehouse),
    )


def _bigquery_client(settings: Settings, credentials: Any) -> Any:
    from google.api_core.client_options import ClientOptions
    from google.cloud import bigquery

    endpoint = settings.bigquery_api_endpoint
    return bigquery.Client(
        project=settings.gcp_project,
        credentials=credentials,
        location=settings.bigquery_location,
        client_options=ClientOptions(api_endpoint=endpoint) if endpoint else None,
    )


def open_app_reader(settings: Settings) -> Reader:
    """What the analyst app reads, and nothing more: the published serving copies (local)
    or the prod dataset (cloud), with application default credentials, which on GCP are
    the app's read-only service account (terraform/main.tf). No Prefect server, no
    pipeline credentials, no lake: the app runs with `streamlit run` alone."""
    if settings.target == "local":
        return ServingReader(settings.serving_dir.resolve())
    if settings.target != "cloud":
        raise ValueError(f"CRYPTOLYTICS_TARGET={settings.target!r} has no reader for the app")
    from flows.bigquery import BigQueryReader

    credentials = None  # application default credentials
    if settings.bigquery_api_endpoint is not None:  # an emulator: nothing can reach Google
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
    return BigQueryReader(
        _bigquery_client(settings, credentials),
        settings.bigquery_prod_dataset,
        settings.bigquery_location,
    )


def _publish_cloud(open_warehouse: Callable[[], Any]) -> None:
    with open_warehouse() as warehouse:
        warehouse.publish_for_app()


_TARGETS: dict[str, Callable[[Settings], Target]] = {"local": _local, "cloud": _cloud}


def with_block_secrets(settings: Settings) -> Settings:
    """On the cloud target, a CoinCap key missing from the environment comes from the Secret
    block `python -m blocks.register` saved, so workers need no key of their own."""
    if settings.target != "cloud" or settings.coincap_api_key is not None:
        return settings
    from prefect.blocks.system import Secret
    from pydantic import SecretStr

    from blocks.gcp import COINCAP_API_KEY

    try:
        key = Secret.load(COINCAP_API_KEY).get()
    except ValueError:  # no such block: replay, as without a key anywhere
        return settings
    if not key:
        return settings
    return settings.model_copy(update={"coincap_api_key": SecretStr(str(key))})


def resolve_target(settings: Settings) -> Target:
    try:
        build = _TARGETS[settings.target]
    except KeyError:
        raise ValueError(
            f"CRYPTOLYTICS_TARGET={settings.target!r} is not available in this version; "
            f"choose one of {sorted(_TARGETS)}"
        ) from None
    return build(settings)
