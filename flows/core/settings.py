"""The one place that reads the environment.

Every other module receives a `Settings` (or values taken from it); nothing else calls
`os.environ`. Variables are prefixed `CRYPTOLYTICS_` and may also come from `.env`;
`env.example` documents each of them.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from flows.core.queries import MoverFilter

PROJECT_ROOT = Path(__file__).resolve().parents[2]

TargetName = Literal["local", "cloud"]
SourceName = Literal["coincap", "replay"]

# CoinCap v3 answers at most this many assets per request.
COINCAP_MAX_PAGE = 2000
# A pipeline run ends within this, inside its 5-minute slot: Prefect fails a run that takes
# longer (the flow's `timeout_seconds`), and the next tick finishes what it left (every step
# is crash-safe). The fetch has its own, shorter deadline (`fetch_deadline_seconds`).
TICK_TIMEOUT_SECONDS = 270
# Every other wait has its bound too (Prefect's `timeout_seconds` on flows and tasks, a job
# timeout on BigQuery): a step that overruns fails (and is retried, or fails its flow), and
# the next run finishes what it left. Inside a tick, the tick's bound is the outer one.
FETCH_TASK_TIMEOUT_SECONDS = 180  # one fetch: its own deadline (120 s) and the last read
# `/rates`, after `/assets` in a live tick: one small body, so a short deadline of its own
# (the tick's market snapshot is already in the lake; a slow rates answer waits a tick)
RATES_FETCH_DEADLINE_SECONDS = 30.0
RATES_TASK_TIMEOUT_SECONDS = 45
LAKE_TASK_TIMEOUT_SECONDS = 60  # one lake write or quarantine
WAREHOUSE_TASK_TIMEOUT_SECONDS = 1800  # one warehouse step (a long backlog's load included)
DBT_TASK_TIMEOUT_SECONDS = 3600  # one dbt build or test run (a full refresh of long history)
BIGQUERY_JOB_TIMEOUT_SECONDS = 600  # one BigQuery job, as dbt's job_execution_timeout_seconds
EXTRACT_TIMEOUT_SECONDS = 240  # the `extract` flow by hand
MAINTENANCE_TIMEOUT_SECONDS = 6 * 3600  # load --reload, transform --full-refresh, audit, backfill
# The Prefect event a run emits when a stage refused something (blocks/alerts.py alerts on it).
DEAD_LETTER_EVENT = "cryptolytics.dead-letter"

# The Prefect blocks `python -m blocks.register` saves and the flows load, by name.
GCP_CREDENTIALS_BLOCK = "cryptolytics-gcp"
COINCAP_API_KEY_BLOCK = "cryptolytics-coincap-api-key"
ALERT_WEBHOOK_BLOCK = "cryptolytics-alerts"


class Settings(BaseSettings):
    """Runtime configuration of the pipeline and the app."""

    model_config = SettingsConfigDict(
        env_prefix="CRYPTOLYTICS_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    target: TargetName = Field("local", description="Where the lake and warehouse live.")
    lake_url: str = Field("./data/lake", description="fsspec URL of the raw data lake.")
    duckdb_path: Path = Field(
        Path("./data/warehouse.duckdb"), description="DuckDB warehouse file (local target)."
    )
    serving_dir: Path = Field(
        Path("./data/serving"), description="Serving copies the app reads (local target)."
    )
    coincap_base_url: str = Field("https://rest.coincap.io/v3")
    coincap_api_key: SecretStr | None = Field(None, description="CoinCap v3 API key.")
    asset_limit: int = Field(2000, ge=1, le=10_000, description="Assets per snapshot.")
    fetch_rates: bool = Field(
        True,
        description="Live ticks also fetch `/rates` (one more request, and CoinCap credit, "
        "per tick) for prices in fiat currencies; off: USD, BTC and ETH only.",
    )
    source: SourceName = Field(
        "coincap", description="coincap (live API) or replay (bundled real 2021 data)."
    )
    http_timeout_seconds: float = Field(
        20.0, gt=0, description="Longest wait for a connection or for any one read."
    )
    http_request_deadline_seconds: float = Field(
        30.0, gt=0, description="Longest one request may take, body included (a trickle ends)."
    )
    fetch_deadline_seconds: float = Field(
        120.0,
        gt=0,
        description="Longest one fetch may take: all attempts, backoffs and Retry-After waits "
        "(inside the tick's 5-minute slot with room for load and build).",
    )
    http_max_response_bytes: int = Field(
        8 * 2**20, ge=1024, description="Cap on the bytes of one answer as received (gzip)."
    )
    http_max_body_bytes: int = Field(
        16 * 2**20,
        ge=1024,
        description="Cap on one answer's bytes once decompressed (a real 2,000-asset body is "
        "about 0.8 MB).",
    )
    http_max_attempts: int = Field(5, ge=1, description="Attempts per request, first included.")
    http_backoff_seconds: float = Field(1.0, ge=0, description="Base of the exponential backoff.")
    dbt_project_dir: Path = Field(PROJECT_ROOT / "dbt")
    dbt_target: str | None = Field(None, description="dbt target; defaults to the target.")
    app_cache_ttl_seconds: int = Field(
        60, ge=0, description="How long the app reuses a query result (schedule: 5 minutes)."
    )
    facts_retention_days: int | None = Field(
        None,
        ge=1,
        description="Keep 5-minute rows this many days (default: all). Older ones go only "
        "once their hourly and daily rollups exist; the lake keeps everything.",
    )
    backfill_requests_per_minute: int = Field(
        200, ge=1, description="Backfill request rate (CoinCap: ~200/min, ~500 with a key)."
    )
    backfill_concurrency: int = Field(4, ge=1, le=32, description="Backfill requests at once.")
    movers_min_volume_usd: float = Field(
        100_000, ge=0, description="Movers need at least this 24h volume (USD)."
    )
    movers_min_market_cap_usd: float = Field(
        1_000_000, ge=0, description="Movers need at least this market cap (USD)."
    )
    replay_seed_days: int = Field(
        28,
        ge=1,
        le=60,
        description="The replay's first tick on an empty lake takes this many days at once, "
        "so the demo's first page already has 24h and 7d changes, movers and sparklines "
        "(every later tick replays one day).",
    )
    warehouse_memory_limit: str = Field(
        "128MB",
        pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="DuckDB's memory limit in each pipeline step (it spills to disk beyond "
        "it): without one DuckDB keeps what it read cached, up to 80% of RAM. Raise it for a "
        "full refresh of long history.",
    )
    lock_timeout_seconds: float = Field(
        60.0,
        ge=0,
        description="How long a run waits for a running one to finish (a tick lasts at most "
        "TICK_TIMEOUT_SECONDS; past this wait the next scheduled tick is near).",
    )
    alert_webhook_url: SecretStr | None = Field(
        None,
        description="Where alerts are POSTed (Slack, Teams, any webhook); `python -m "
        "blocks.register` stores it in a Prefect webhook block. It often holds a token.",
    )
    alert_stale_after: timedelta = Field(
        timedelta(minutes=15),
        ge=timedelta(seconds=10),
        description="Alert when no pipeline run has completed for this long (an ISO 8601 "
        "duration, e.g. PT15M).",
    )
    alert_failures_within: timedelta = Field(
        timedelta(minutes=11),
        ge=timedelta(seconds=1),
        description="Alert when two pipeline runs fail within this window: two ticks in a "
        "row on the 5-minute schedule.",
    )

    # The cloud target (GCS + BigQuery); terraform/outputs.tf prints the values to use.
    gcp_project: str | None = Field(None, description="Project of the lake and the datasets.")
    gcp_credentials_file: Path | None = Field(
        None,
        description="Service-account key file that `python -m blocks.register` stores in the "
        "GcpCredentials block (never in the repo); none: application default credentials.",
    )
    gcs_endpoint_url: str | None = Field(None, description="GCS API endpoint (an emulator).")
    bigquery_location: str = Field(
        "europe-west6", description="Location of the datasets; every BigQuery job runs there."
    )
    bigquery_staging_dataset: str = Field("stg_coins_dataset")
    bigquery_prod_dataset: str = Field("prod_coins_dataset")
    bigquery_api_endpoint: str | None = Field(None, description="BigQuery endpoint (an emulator).")

    @field_validator(
        "alert_webhook_url",
        "gcp_project",
        "gcp_credentials_file",
        "gcs_endpoint_url",
        "bigquery_api_endpoint",
        "dbt_target",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """`NAME=` (as env.example and docker-compose.yml pass an unset one) means unset."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("coincap_api_key", mode="before")
    @classmethod
    def _blank_key_is_no_key(cls, value: object) -> object:
        """`CRYPTOLYTICS_COINCAP_API_KEY=` (as copied from env.example) means no key."""
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def api_key(self) -> str | None:
        return self.coincap_api_key.get_secret_value() if self.coincap_api_key else None

    @property
    def mover_filter(self) -> MoverFilter:
        return MoverFilter(self.movers_min_volume_usd, self.movers_min_market_cap_usd)

    @property
    def pipeline_lock_path(self) -> Path:
        """Held by whoever writes the warehouse or the serving copies (flows/runtime/locking.py)."""
        return self.duckdb_path.parent / "pipeline.lock"

    @property
    def lake_lock_path(self) -> Path:
        """Held while a tick takes its snapshot: two ticks never ask for the same replay
        day at once, and the warehouse's lock is not needed to keep the market's moment."""
        return self.duckdb_path.parent / "lake.lock"


def get_settings() -> Settings:
    """Settings as the environment gives them now (cheap: a few env lookups)."""
    return Settings()
