"""The Prefect blocks of the cloud target: GCP credentials, the lake bucket, the BigQuery
warehouse and the CoinCap API key, saved under fixed names so flows load them by name.

Key material goes into the blocks (Prefect stores `service_account_info` and `Secret` values
as secrets and masks them in the UI and API); it is never printed, logged or returned.
"""

from __future__ import annotations

import json
from urllib.parse import urlparse

from prefect.blocks.system import Secret
from prefect_gcp import GcpCredentials, GcsBucket
from prefect_gcp.bigquery import BigQueryWarehouse

from flows.settings import Settings

GCP_CREDENTIALS = "cryptolytics-gcp"
LAKE_BUCKET = "cryptolytics-lake"
WAREHOUSE = "cryptolytics-bigquery"
COINCAP_API_KEY = "cryptolytics-coincap-api-key"


def lake_location(lake_url: str) -> tuple[str, str]:
    """`gs://bucket/folder` -> (bucket, folder)."""
    parsed = urlparse(lake_url)
    if parsed.scheme not in ("gs", "gcs") or not parsed.netloc:
        raise ValueError(
            f"the cloud target needs CRYPTOLYTICS_LAKE_URL=gs://<bucket>/<folder>, not {lake_url!r}"
        )
    return parsed.netloc, parsed.path.strip("/")


def credentials(settings: Settings) -> GcpCredentials:
    """From the key file if one is set, else application default credentials."""
    info = None
    if settings.gcp_credentials_file is not None:
        try:
            info = json.loads(settings.gcp_credentials_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(
                f"CRYPTOLYTICS_GCP_CREDENTIALS_FILE={settings.gcp_credentials_file} is not a "
                f"readable service-account key file ({exc.__class__.__name__})"
            ) from None
    return GcpCredentials(project=settings.gcp_project, service_account_info=info)


def register_gcp(settings: Settings) -> list[str]:
    """Create or overwrite the cloud target's blocks; what was done, one line each."""
    if settings.target != "cloud":
        return ["gcp blocks: skipped (CRYPTOLYTICS_TARGET is not cloud)"]
    bucket, folder = lake_location(settings.lake_url)
    gcp = credentials(settings)
    gcp.save(GCP_CREDENTIALS, overwrite=True)
    auth = "service-account key" if gcp.service_account_info else "application default credentials"
    done = [f"block {GCP_CREDENTIALS}: saved ({auth}, project {settings.gcp_project})"]
    GcsBucket(bucket=bucket, bucket_folder=folder, gcp_credentials=gcp).save(
        LAKE_BUCKET, overwrite=True
    )
    done.append(f"block {LAKE_BUCKET}: saved (gs://{bucket}/{folder})")
    BigQueryWarehouse(gcp_credentials=gcp).save(WAREHOUSE, overwrite=True)
    done.append(f"block {WAREHOUSE}: saved")
    if settings.api_key:
        Secret(value=settings.api_key).save(COINCAP_API_KEY, overwrite=True)
        done.append(f"block {COINCAP_API_KEY}: saved")
    else:
        done.append(f"block {COINCAP_API_KEY}: skipped (no CRYPTOLYTICS_COINCAP_API_KEY)")
    return done
