"""`python -m blocks.register` for the cloud target, on a real Prefect server: the blocks
exist under their names, a rerun updates them in place, and no key material is printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL
from prefect_gcp import GcpCredentials

from blocks.gcp import lake_location
from flows.core.settings import COINCAP_API_KEY_BLOCK, GCP_CREDENTIALS_BLOCK, PROJECT_ROOT, Settings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.prefect,
    pytest.mark.usefixtures("prefect_server"),
]


def throwaway_private_key() -> str:
    """A fresh RSA key in PEM (GcpCredentials parses the key when the block is built)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def register(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "blocks.register"],
        cwd=PROJECT_ROOT,
        env={**os.environ, **env, "PREFECT_API_URL": str(PREFECT_API_URL.value())},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_cloud_blocks_register_idempotently_without_printing_secrets(
    settings: Settings, tmp_path: Path
) -> None:
    private_key = throwaway_private_key()
    key_body = private_key.splitlines()[1]  # a line of the key itself
    key_file = tmp_path / "sa.json"
    key_file.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "cryptolytics-test",
                "private_key_id": "abc123",
                "private_key": private_key,
                "client_email": "pipeline@cryptolytics-test.iam.gserviceaccount.com",
                "token_uri": "http://127.0.0.1:9/token",
            }
        )
    )
    env = {
        "CRYPTOLYTICS_TARGET": "cloud",
        "CRYPTOLYTICS_LAKE_URL": "gs://cryptolytics-test-lake/lake",
        "CRYPTOLYTICS_GCP_PROJECT": "cryptolytics-test",
        "CRYPTOLYTICS_GCP_CREDENTIALS_FILE": str(key_file),
        "CRYPTOLYTICS_COINCAP_API_KEY": "sk-coincap-SECRET-99",
        "CRYPTOLYTICS_ALERT_WEBHOOK_URL": "",
    }
    first = register(env)
    block_types = {
        GCP_CREDENTIALS_BLOCK: "gcp-credentials",
        COINCAP_API_KEY_BLOCK: "secret",
    }
    with get_client(sync_client=True) as client:
        ids = {
            name: client.read_block_document_by_name(name, kind).id
            for name, kind in block_types.items()
        }
    second = register(env)
    with get_client(sync_client=True) as client:  # the server is shared: look at ours only
        after = {d.name: d.id for d in client.read_block_documents() if d.name in block_types}
    assert after == ids  # updated in place, not doubled

    for output in (first, second):
        assert f"block {GCP_CREDENTIALS_BLOCK}: saved" in output
        assert "service-account key" in output
        assert key_body not in output and "SECRET-99" not in output

    gcp = GcpCredentials.load(GCP_CREDENTIALS_BLOCK)
    assert gcp.project == "cryptolytics-test"
    assert key_body not in str(gcp) and key_body not in gcp.model_dump_json()  # masked
    assert gcp.service_account_info.get_secret_value()["private_key"] == private_key
    assert Secret.load(COINCAP_API_KEY_BLOCK).get() == "sk-coincap-SECRET-99"


def test_the_lake_url_must_name_a_bucket() -> None:
    assert lake_location("gs://bucket/some/folder") == ("bucket", "some/folder")
    with pytest.raises(ValueError, match="gs://<bucket>/<folder>"):
        lake_location("./data/lake")
