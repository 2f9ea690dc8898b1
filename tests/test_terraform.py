"""The Terraform, parsed (no provider can be downloaded here, so no `terraform validate`):
least privilege, no key material, history kept. `.ci/run` adds `terraform fmt -check` and a
checkov scan."""

from __future__ import annotations

import re
from typing import Any

import hcl2
import pytest

from flows.core.settings import PROJECT_ROOT

pytestmark = pytest.mark.unit

TERRAFORM = PROJECT_ROOT / "terraform"


def _plain(value: Any) -> Any:
    """python-hcl2 keeps HCL's quotes in strings and keys; drop them."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@pytest.fixture(scope="module")
def config() -> dict[str, list[dict[str, Any]]]:
    merged: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open() as handle:
            for block, items in _plain(hcl2.load(handle)).items():
                merged.setdefault(block, []).extend(items if isinstance(items, list) else [items])
    return merged


def resources(config: dict, kind: str) -> dict[str, dict[str, Any]]:
    found = {}
    for item in config["resource"]:
        for name, body in item.get(kind, {}).items():
            found[name] = body
    return found


def test_every_file_parses_and_the_layout_is_complete(config: dict) -> None:
    names = {path.name for path in TERRAFORM.glob("*.tf")}
    assert {"versions.tf", "variables.tf", "outputs.tf", "main.tf"} <= names
    assert (TERRAFORM / "terraform.tfvars.example").exists()
    assert {"resource", "variable", "output", "terraform"} <= config.keys()


def test_no_broad_role_and_no_project_wide_data_access(config: dict) -> None:
    bindings = [
        (kind, body["role"])
        for item in config["resource"]
        for kind, named in item.items()
        if "iam" in kind
        for body in named.values()
    ]
    assert bindings, "no IAM bindings found"
    roles = {role for _, role in bindings}
    assert not roles & {
        "roles/owner",
        "roles/editor",
        "roles/bigquery.admin",
        "roles/storage.admin",
    }
    project_wide = {role for kind, role in bindings if kind.startswith("google_project_iam")}
    assert project_wide == {"roles/bigquery.jobUser"}  # grants no data by itself
    assert "roles/storage.objectAdmin" not in roles  # it could delete any lake object
    dataset_roles = {role for kind, role in bindings if kind.startswith("google_bigquery_dataset")}
    assert dataset_roles == {"roles/bigquery.dataEditor", "roles/bigquery.dataViewer"}


def test_no_key_material_anywhere(config: dict) -> None:
    kinds = {kind for item in config["resource"] for kind in item}
    assert "google_service_account_key" not in kinds
    text = " ".join(path.read_text() for path in TERRAFORM.glob("*.tf")).lower()
    assert "private_key" not in text and "credentials" not in text
    for output in config["output"]:
        for name, body in output.items():
            assert "key" not in name and "private" not in str(body["value"]), name


def test_the_lake_keeps_history(config: dict) -> None:
    (lake,) = resources(config, "google_storage_bucket").values()
    assert lake["uniform_bucket_level_access"] is True
    assert lake["public_access_prevention"] == "enforced"
    assert lake["force_destroy"] is False
    assert lake["versioning"] == [{"enabled": True}]
    assert lake["soft_delete_policy"] == [
        {"retention_duration_seconds": "${var.soft_delete_days * 86400}"}
    ]
    for rule in lake["lifecycle_rule"]:
        (action,), (condition,) = rule["action"], rule["condition"]
        if action["type"] == "Delete":  # only the derived staged/ load files expire
            assert condition["matches_prefix"] == ["${var.lake_prefix}staged/"], rule
        else:
            assert action["type"] == "SetStorageClass", rule  # colder, never deleted


def test_the_pipeline_creates_and_reads_lake_objects_but_deletes_only_raw_and_staged(
    config: dict,
) -> None:
    lake_bindings = resources(config, "google_storage_bucket_iam_member")
    by_role = {body["role"]: body for body in lake_bindings.values()}
    assert set(by_role) == {
        "roles/storage.objectViewer",  # get, list
        "roles/storage.objectCreator",  # create; no delete, so no overwrite either
        "roles/storage.objectUser",  # delete, under a condition
    }
    assert "condition" not in by_role["roles/storage.objectViewer"]
    assert "condition" not in by_role["roles/storage.objectCreator"]
    (condition,) = by_role["roles/storage.objectUser"]["condition"]
    prefixes = re.findall(r'startsWith\(\\?"([^"\\]+)\\?"\)', condition["expression"])
    objects = "projects/_/buckets/${var.lake_bucket}/objects/${var.lake_prefix}"
    assert prefixes == [f"{objects}raw/", f"{objects}staged/"], condition["expression"]
    assert " || " in condition["expression"] and "&&" not in condition["expression"]


def test_datasets_and_bucket_share_the_location_variable(config: dict) -> None:
    datasets = resources(config, "google_bigquery_dataset")
    assert set(datasets) == {"staging", "prod"}
    for body in [*datasets.values(), *resources(config, "google_storage_bucket").values()]:
        assert body["location"] == "${var.location}"
    variables = {name: body for item in config["variable"] for name, body in item.items()}
    assert variables["staging_dataset"]["default"] == "stg_coins_dataset"
    assert variables["prod_dataset"]["default"] == "prod_coins_dataset"
    assert variables["location"]["default"] == "europe-west6"
