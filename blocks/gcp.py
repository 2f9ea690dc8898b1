"""The Prefect blocks of the cloud target: GCP credentials and the CoinCap API key, saved
under the names in `flows.core.settings`, where the flows load them. (The lake and the
datasets are settings, not blocks: a GcsBucket or BigQueryWarehouse block nothing loads
would be a second, unused place to configure them.)

Key material goes into the blocks (Prefect stores `service_account_info` and `Secret` values
as secrets and masks them in the UI and API); it is never printed, logged or returned.
"""

from __future__ import annotations

import json
from urllib.parse import urlparse

from prefect.blocks.system import Secret
from prefect_gcp import GcpCredentials

from flows.core.settings import COINCAP_API_KEY_BLOCK, GCP_CREDENTIALS_BLOCK, Settings


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
    lake_location(settings.lake_url)  # refuse a lake URL the cloud target cannot use
    gcp = credentials(settings)
    gcp.save(GCP_CREDENTIALS_BLOCK, overwrite=True)
    auth = "service-account key" if gcp.service_account_info else "application default credentials"
    done = [f"block {GCP_CREDENTIALS_BLOCK}: saved ({auth}, project {settings.gcp_project})"]
    if settings.api_key:
        Secret(value=settings.api_key).save(COINCAP_API_KEY_BLOCK, overwrite=True)
        done.append(f"block {COINCAP_API_KEY_BLOCK}: saved")
    else:
        done.append(f"block {COINCAP_API_KEY_BLOCK}: skipped (no CRYPTOLYTICS_COINCAP_API_KEY)")
    return done
